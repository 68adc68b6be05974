package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// login gets a token for the context's user and password from dmsd's
// Keystone v3 endpoint (POST /v3/auth/tokens), scoped to the project. The
// native API has no call that issues tokens; the HTTP endpoint is the one
// every DMS client uses.
func (a *app) login(ctx context.Context) (string, error) {
	if a.ctx.HTTPAddr == "" {
		return "", usagef("the context has a user but no http-addr: the token comes from POST /v3/auth/tokens on dmsd's HTTP listener")
	}
	account := a.ctx.Account
	if account == "" {
		account = "Default"
	}
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
			"name": a.ctx.User, "password": a.ctx.Password, "domain": map[string]any{"name": account}}}},
	}}
	// Managing identities and reading the audit trail need an unscoped
	// token; everything else acts in the project.
	if !a.unscoped {
		body["auth"].(map[string]any)["scope"] = map[string]any{"project": map[string]any{"id": a.ctx.Project}}
	}
	data, _ := json.Marshal(body)
	scheme := "http"
	if a.ctx.TLS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+a.ctx.HTTPAddr+"/v3/auth/tokens", bytes.NewReader(data))
	if err != nil {
		return "", usagef("http-addr %q: %v", a.ctx.HTTPAddr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", status.Errorf(codes.Unavailable, "logging in at %s: %v", a.ctx.HTTPAddr, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return "", status.Errorf(codes.Unauthenticated, "logging in as %s: %s", a.ctx.User, bytes.TrimSpace(text))
	case resp.StatusCode == http.StatusForbidden:
		return "", status.Errorf(codes.PermissionDenied, "logging in as %s: %s", a.ctx.User, bytes.TrimSpace(text))
	case resp.StatusCode/100 != 2:
		return "", status.Errorf(codes.Unavailable, "logging in as %s: HTTP %d: %s", a.ctx.User, resp.StatusCode, bytes.TrimSpace(text))
	}
	tok := resp.Header.Get("X-Subject-Token")
	if tok == "" {
		return "", fmt.Errorf("logging in as %s: the answer carries no X-Subject-Token", a.ctx.User)
	}
	return tok, nil
}
