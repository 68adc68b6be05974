// Package console drives the web console (services/console) in a real
// browser: Debian's chromium, headless, through the DevTools protocol
// (chromedp), against a real in-process dmsd. run.sh installs chromium and
// runs the tests (make console-test, part of make test); with
// DMS_CONSOLE_SCREENSHOTS=DIR they save a screenshot of every page there
// (make console-screenshots writes docs/console/).
package console
