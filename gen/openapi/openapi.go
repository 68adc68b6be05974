// Package openapi embeds the OpenAPI (Swagger 2.0) document that
// protoc-gen-openapiv2 generates from the public dms.v1 protos, so that dmsd
// can serve it. The document itself is generated; this file is not.
package openapi

import _ "embed"

// Document is the OpenAPI document of the public DMS API in JSON.
//
//go:embed spec/dms.swagger.json
var Document []byte
