module github.com/opendms/dms/loadtest

go 1.26.8

require (
	github.com/opendms/dms/gen v0.0.0
	github.com/opendms/dms/sdk/go v0.0.0
)

replace (
	github.com/opendms/dms/gen => ../gen
	github.com/opendms/dms/sdk/go => ../sdk/go
)
