package gateway

import (
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
)

// The document's description of the service. protoc-gen-openapiv2 knows only
// the protos, so what describes the service as a whole is added here, where
// the build's version is known.
const (
	apiTitle       = "DMS API"
	apiDescription = "The public API of DMS, a distributed message service: queues and consumer groups, " +
		"sending, receiving and acknowledging messages, dead letters, identities and the audit trail. " +
		"Every operation is also a gRPC method of the dms.v1 services, from which this document is generated. " +
		"Errors carry a google.rpc.Status with an ErrorInfo whose reason is stable (dms.v1.ErrorReason)."
	apiContactName = "DMS maintainers"
	apiContactURL  = "https://github.com/opendms/dms"
	// The repository has no license file yet; UNLICENSED says so rather
	// than claim one.
	apiLicenseName = "UNLICENSED"
)

// Security scheme names of the document.
const (
	schemeBearer    = "bearer"
	schemeAuthToken = "authToken"
	schemeAKSK      = "akSk"
)

// openAPI3 turns the generated Swagger 2.0 document into the OpenAPI 3
// document that dmsd serves: converted with kin-openapi, then given the
// service's title, version, contact, license, server and security schemes.
// Every operation accepts any of the three credentials; with authentication
// off (authRequired false) none is needed, which the empty alternative says.
func openAPI3(swagger []byte, version string, authRequired bool) ([]byte, error) {
	var doc2 openapi2.T
	if err := json.Unmarshal(swagger, &doc2); err != nil {
		return nil, fmt.Errorf("gateway: reading the Swagger document: %w", err)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("gateway: converting the Swagger document to OpenAPI 3: %w", err)
	}
	doc.Info = &openapi3.Info{
		Title:       apiTitle,
		Description: apiDescription,
		Version:     version,
		Contact:     &openapi3.Contact{Name: apiContactName, URL: apiContactURL},
		License:     &openapi3.License{Name: apiLicenseName},
	}
	// Relative: the API is where the document is, whatever name or proxy
	// a client reached it by.
	doc.Servers = openapi3.Servers{{URL: "/", Description: "the dmsd that serves this document"}}
	if doc.Components == nil {
		doc.Components = &openapi3.Components{}
	}
	doc.Components.SecuritySchemes = openapi3.SecuritySchemes{
		schemeBearer: {Value: &openapi3.SecurityScheme{
			Type: "http", Scheme: "bearer",
			Description: "An API token (IdentityService.CreateApiToken) or a token issued by the Keystone-compatible " +
				"/v3/auth/tokens, as `Authorization: Bearer <token>`.",
		}},
		schemeAuthToken: {Value: &openapi3.SecurityScheme{
			Type: "apiKey", In: "header", Name: "X-Auth-Token",
			Description: "The same tokens in the header that Huawei Cloud (IAM) clients send.",
		}},
		schemeAKSK: {Value: &openapi3.SecurityScheme{
			Type: "apiKey", In: "header", Name: "Authorization",
			Description: "A request signed with an access key (AK/SK), as Huawei Cloud SDKs sign: " +
				"`Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>` " +
				"with the X-Sdk-Date header, within 15 minutes of the server's clock.",
		}},
	}
	doc.Security = openapi3.SecurityRequirements{
		{schemeBearer: []string{}},
		{schemeAuthToken: []string{}},
		{schemeAKSK: []string{}},
	}
	if !authRequired {
		doc.Security = append(doc.Security, openapi3.SecurityRequirement{})
	}
	return json.Marshal(doc)
}

// buildVersion is the version of the running dmsd as Go's build
// information has it: the module version of a released build, otherwise
// the VCS revision it was built from (dirty when the tree had changes).
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision == "" {
		return "dev"
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if modified == "true" {
		revision += "-dirty"
	}
	return "0.0.0-" + revision
}
