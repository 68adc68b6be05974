package console

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/opendms/dms/services/testserver"
)

// With authentication on, the console asks for a login, shows the server's
// refusal of a wrong password, and with the right one works through the
// API with the token: the queue it creates is there, and the audit log,
// which only the operator's administrators may read, shows the console's
// first, unauthenticated call refused.
func TestConsoleLogin(t *testing.T) {
	const password = "console-admin-password"
	t.Setenv("DMS_ADMIN_PASSWORD", password)
	s := testserver.Start(t, testserver.WithFlags("-auth.enabled"))
	p := &page{t: t, ctx: browser(t), base: "http://" + s.HTTPAddr + "/console/"}

	p.open("/")
	p.waitText("body", "log in")
	p.typeInto(`[data-testid=login-password]`, "not the password")
	p.click(`[data-testid=login-submit]`)
	p.run("wait for the error", chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-error]`)))
	if got := p.text(`[data-testid=login-error]`); !strings.Contains(got, "401") {
		t.Fatalf("a wrong password shows %q, not the server's 401", got)
	}
	p.screenshot("login")

	p.replace(`[data-testid=login-password]`, password)
	p.click(`[data-testid=login-submit]`)
	p.waitText(`[data-testid=queues]`, "Queue")
	p.click(`[data-testid=create-queue]`)
	p.typeInto(`[data-testid=queue-name]`, "secured")
	p.click(`[data-testid=create-queue-ok]`)
	p.waitText(`[data-testid=queue-title]`, "secured")

	p.open("/audit")
	p.waitText(`[data-testid=audit-records]`, "CreateQueue", "UNAUTHENTICATED")

	p.click(`[data-testid=logout]`)
	p.waitText("body", "log in")
}
