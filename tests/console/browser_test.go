package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// browser starts a headless chromium (DMS_CHROMIUM, or chromium on the
// PATH) for one test, with a window the size of a laptop screen.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("DMS_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Skip("no chromium: run tests/console/run.sh (make console-test), which installs it")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1440, 900),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// An exception the page does not catch is a bug of the console, even
	// when the page still shows what the test waits for.
	var mu sync.Mutex
	var thrown []string
	listen := chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := e.ExceptionDetails
			what := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				what = d.Exception.Description
			}
			thrown = append(thrown, fmt.Sprintf("%s (%s:%d)", what, d.URL, d.LineNumber+1))
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range thrown {
			t.Errorf("the page threw: %s", e)
		}
	})
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf), listen)
	// Every step waits for what the page should show; this bounds a page
	// that never shows it, so that a failure says where it stopped.
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// page wraps the steps of one test on one browser tab.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string // http://host:port/console/
}

func (p *page) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage shows:\n%s", what, err, p.text("body"))
	}
}

// text is what the element shows, as a person reads it.
func (p *page) text(sel string) string {
	s, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||""`, sel)))
	return s
}

// eval runs a script on the page.
func eval[T any](p *page, js string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitText waits until the element shows every one of want.
func (p *page) waitText(sel string, want ...string) string {
	p.t.Helper()
	for {
		got := p.text(sel)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(got, w)
		}
		if ok {
			return got
		}
		select {
		case <-p.ctx.Done():
			p.t.Fatalf("%s never showed %q; it shows:\n%s\nthe page shows:\n%s", sel, want, got, p.textNoWait("body"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *page) textNoWait(sel string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), 2*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||""`, sel)))
	return s
}

// open goes to a route of the console (the part after #).
func (p *page) open(route string) {
	p.t.Helper()
	p.run("open "+route, chromedp.Navigate(p.base+"#"+route))
}

// click clicks the first element sel matches, once it is visible.
func (p *page) click(sel string) {
	p.t.Helper()
	p.run("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// clickText clicks the first element sel matches whose text is text
// (Ant Design's buttons and options have no ids of ours).
func (p *page) clickText(sel, text string) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const el = [...document.querySelectorAll(%q)].find(e => e.innerText.trim() === %q); if (!el) return false; el.click(); return true })()`, sel, text)
	for {
		if eval[bool](p, js) {
			return
		}
		select {
		case <-p.ctx.Done():
			p.t.Fatalf("no %s shows %q; the page shows:\n%s", sel, text, p.textNoWait("body"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *page) typeInto(sel, text string) {
	p.t.Helper()
	p.run("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// replace types text over what an input holds.
func (p *page) replace(sel, text string) {
	p.t.Helper()
	p.run("replace "+sel, chromedp.Click(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), kb.End+strings.Repeat(kb.Backspace, 40)+text))
}

// screenshot saves the viewport as NAME.png under DMS_CONSOLE_SCREENSHOTS,
// when it is set.
func (p *page) screenshot(name string) {
	p.t.Helper()
	dir := os.Getenv("DMS_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	// Charts draw without animation, but give the last sample a moment to
	// be drawn.
	p.run("screenshot", chromedp.Sleep(300*time.Millisecond))
	buf, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
}
