// Package dmsclients runs the clients DMS users already have against a real
// dmsd with authentication on: requests signed by the Huawei Cloud Python
// SDK's AK/SK signer (huaweicloudsdkcore) and OpenStack's keystoneauth1
// (Keystone v3 password authentication, the dms endpoint of the token's
// catalog, X-Auth-Token). run.sh installs them, pinned, and runs the tests
// (make dms-clients-test, part of make test).
package dmsclients
