// Package browser tests the agent's status page in a real browser, headless
// Chromium driven by chromedp. It is a module of its own so that chromedp
// stays out of the agent's go.mod.
package browser
