package gateway

import (
	"context"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/gen/openapi"
)

// TestOpenAPI3Document: the document dmsd serves is valid OpenAPI 3 by
// kin-openapi's validator, describes the service, and keeps every
// operation of the generated Swagger document.
func TestOpenAPI3Document(t *testing.T) {
	for _, authRequired := range []bool{false, true} {
		raw, err := openAPI3(openapi.Document, "1.2.3", authRequired)
		require.NoError(t, err)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(raw)
		require.NoError(t, err)
		require.NoError(t, doc.Validate(context.Background()))

		assert.Equal(t, "3.0.3", doc.OpenAPI)
		assert.Equal(t, "DMS API", doc.Info.Title)
		assert.Equal(t, "1.2.3", doc.Info.Version)
		assert.NotEmpty(t, doc.Info.Contact.URL)
		assert.NotEmpty(t, doc.Info.License.Name)
		require.Len(t, doc.Servers, 1)
		assert.ElementsMatch(t, []string{"bearer", "authToken", "akSk"}, keysOf(doc.Components.SecuritySchemes))
		optional := false
		for _, req := range doc.Security {
			optional = optional || len(req) == 0
		}
		assert.Equal(t, !authRequired, optional, "credentials are optional exactly when authentication is off")

		routes, err := routesOf(openapi.Document)
		require.NoError(t, err)
		operations := 0
		for _, item := range doc.Paths.Map() {
			operations += len(item.Operations())
		}
		swaggerOperations := 0
		for _, r := range routes {
			swaggerOperations += len(r.methods)
		}
		assert.Equal(t, swaggerOperations, operations, "every operation is converted")
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestBuildVersion(t *testing.T) {
	assert.NotEmpty(t, buildVersion())
}
