//go:build integration

// Package integration holds the end-to-end tests of the Go client against a
// running gateway and upstream emulator. Run them through the stack runner,
// which starts both and exports their addresses:
//
//	make test-go                       # from the repository root
//	.venv/bin/python -m tools.stack -- make -C clients/go test
//
// Without CLASSIFY_GATEWAY_ADDR every test here fails (it does not skip), so
// that a CI run that lost its stack cannot pass silently.
//
// The gateway runs the shipped defaults (coalescing, the page cache, v1.3's
// embedding caches), for the whole suite: each test asks its own question
// (ownQuestion), and a test that counts upstream requests or needs a fault met
// sends `cache-control: no-cache` (fresh). See docs/clients.md, "How the suites
// live with the cache".
package integration
