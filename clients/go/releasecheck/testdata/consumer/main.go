// A consumer of the client module, built by release-check.sh outside the repository: a
// fresh module that gets the client by version from a module proxy. CLIENT_MODULE is
// replaced by the module path from clients/go/go.mod. (testdata: no go command in this
// repository ever builds it in place.)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"CLIENT_MODULE/classify"
	classifyv1 "CLIENT_MODULE/gen/classify/v1"
)

func main() {
	// The service config is embedded (go:embed): it must have come through the module zip.
	var config struct {
		MethodConfig []json.RawMessage `json:"methodConfig"`
	}
	if err := json.Unmarshal([]byte(classify.ServiceConfig), &config); err != nil || len(config.MethodConfig) == 0 {
		fail("the embedded service config is missing or unreadable: %v", err)
	}
	// Nothing listens on port 1: a call must end UNAVAILABLE, after the config's retries.
	conn, err := classify.Dial("127.0.0.1:1")
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = classifyv1.NewClassifyServiceClient(conn).GetClassifyPage(ctx, &classifyv1.GetClassifyPageRequest{PageToken: "t"})
	if status.Code(err) != codes.Unavailable {
		fail("want UNAVAILABLE from a closed port, got %v", err)
	}
	fmt.Printf("consumer ok: %d method configs, a call to a closed port ended %s\n", len(config.MethodConfig), status.Code(err))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "consumer: "+format+"\n", args...)
	os.Exit(1)
}
