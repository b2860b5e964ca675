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
package integration
