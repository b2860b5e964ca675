// Command classify streams a classification from the classify-gateway and
// prints each page as it arrives.
//
//	go run ./cmd/classify -addr 127.0.0.1:50051 -videos id1,id2
//	go run ./cmd/classify -addr 127.0.0.1:50051 -index IDX -page-limit 5 -max-pages 2
//	go run ./cmd/classify -addr 127.0.0.1:50051 -resume TOKEN
//
// Classes default to a small demo taxonomy; give your own with repeated
// -class "Name=prompt one|prompt two".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/classify-gateway/classify-gateway/clients/go/classify"
	classifyv1 "github.com/classify-gateway/classify-gateway/clients/go/gen/classify/v1"
)

type classFlags []*classifyv1.ClassDefinition

func (c *classFlags) String() string { return fmt.Sprint(len(*c), " classes") }

func (c *classFlags) Set(v string) error {
	name, prompts, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" || strings.TrimSpace(prompts) == "" {
		return errors.New(`want "Name=prompt one|prompt two"`)
	}
	*c = append(*c, &classifyv1.ClassDefinition{Name: strings.TrimSpace(name), Prompts: strings.Split(prompts, "|")})
	return nil
}

// The taxonomy of `classify-gateway demo`.
var demoClasses = []*classifyv1.ClassDefinition{
	{Name: "Dance", Prompts: []string{"dance tutorial", "dance group performance", "dancers on stage"}},
	{Name: "Cooking", Prompts: []string{"cooking tutorial", "recipe in the kitchen", "chef preparing food"}},
	{Name: "Sports", Prompts: []string{"soccer match", "athletes competing", "players scoring a goal"}},
	{Name: "News", Prompts: []string{"breaking news report", "news anchor in the studio"}},
	{Name: "Travel", Prompts: []string{"travel vlog", "tourists visiting a city", "beach and mountains"}},
	{Name: "Music", Prompts: []string{"live concert", "band playing guitar", "singer on stage"}},
	{Name: "Nature", Prompts: []string{"wildlife documentary", "forest and animals"}},
	{Name: "Technology", Prompts: []string{"gadget review", "smartphone unboxing", "software tutorial"}},
}

func main() {
	var classes classFlags
	addr := flag.String("addr", "127.0.0.1:50051", "gateway address host:port")
	videos := flag.String("videos", "", "comma-separated video ids to classify")
	index := flag.String("index", "", "classify every video of this index instead")
	resume := flag.String("resume", "", "resume a classification from this page token")
	pageLimit := flag.Int("page-limit", 0, "videos per page, 1 to 50 (0: upstream default 10)")
	maxPages := flag.Int("max-pages", 0, "stop after this many pages (0: all)")
	minVideo := flag.Float64("min-video-score", 30, "threshold.min_video_score, 0 to 100 (negative: upstream default 75)")
	minClip := flag.Float64("min-clip-score", 30, "threshold.min_clip_score, 0 to 100 (negative: upstream default 65)")
	minRatio := flag.Float64("min-duration-ratio", 0.05, "threshold.min_duration_ratio, 0.01 to 1 (negative: upstream default 0.5)")
	clips := flag.Bool("clips", false, "include the matching clips")
	timeout := flag.Duration("timeout", 0, "deadline of the whole call (0: the service config's 60s)")
	flag.Var(&classes, "class", `a class "Name=prompt one|prompt two" (repeatable; default: a demo taxonomy)`)
	flag.Parse()

	req := &classifyv1.ClassifyRequest{PageToken: *resume, MaxPages: int32(*maxPages)}
	if *resume == "" {
		if (*videos == "") == (*index == "") {
			fmt.Fprintln(os.Stderr, "give exactly one of -videos, -index (or -resume)")
			flag.Usage()
			os.Exit(2)
		}
		if *videos != "" {
			req.VideoIds = strings.Split(*videos, ",")
		}
		req.IndexId = *index
		req.Options = []classifyv1.SearchOption{
			classifyv1.SearchOption_SEARCH_OPTION_VISUAL,
			classifyv1.SearchOption_SEARCH_OPTION_CONVERSATION,
			classifyv1.SearchOption_SEARCH_OPTION_TEXT_IN_VIDEO,
		}
		req.Classes = classes
		if len(req.Classes) == 0 {
			req.Classes = demoClasses
		}
		req.PageLimit = int32(*pageLimit)
		req.IncludeClips = *clips
		// Threshold fields have presence: an unset one takes the upstream default.
		th := &classifyv1.Threshold{}
		if *minVideo >= 0 {
			th.MinVideoScore = minVideo
		}
		if *minClip >= 0 {
			th.MinClipScore = minClip
		}
		if *minRatio >= 0 {
			th.MinDurationRatio = minRatio
		}
		req.Threshold = th
	}

	conn, err := classify.Dial(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := classifyv1.NewClassifyServiceClient(conn)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	start := time.Now()
	token, err := classify.StreamAll(ctx, client, req, func(page *classifyv1.ClassifyResponse) error {
		pi := page.GetPageInfo()
		fmt.Printf("page %d  (%d videos of %d, +%s)\n", page.GetPageNumber(), len(page.GetData()), pi.GetTotalResults(), time.Since(start).Round(time.Millisecond))
		for _, v := range page.GetData() {
			if len(v.GetClasses()) == 0 {
				fmt.Printf("  %-26s  (no class above the threshold)\n", v.GetVideoId())
			}
			for _, c := range v.GetClasses() {
				fmt.Printf("  %-26s  %-12s  score %6.2f  duration_ratio %.3f", v.GetVideoId(), c.GetName(), c.GetScore(), c.GetDurationRatio())
				if n := len(c.GetClips()); n > 0 {
					fmt.Printf("  %d clips", n)
				}
				fmt.Println()
			}
		}
		return nil
	})
	if err != nil {
		st := status.Convert(err)
		fmt.Fprintf(os.Stderr, "error: %s: %s\n", st.Code(), st.Message())
		info, bad, _ := classify.ErrorDetails(err)
		if info != nil {
			fmt.Fprintf(os.Stderr, "  reason %s (domain %s) %v\n", info.GetReason(), info.GetDomain(), info.GetMetadata())
		}
		for _, v := range bad.GetFieldViolations() {
			fmt.Fprintf(os.Stderr, "  field %s: %s\n", v.GetField(), v.GetDescription())
		}
		if d, ok := classify.RetryDelay(err); ok {
			fmt.Fprintf(os.Stderr, "  retry after %s\n", d)
		}
		if token != "" {
			fmt.Fprintf(os.Stderr, "resume with: -resume %s\n", token)
		}
		os.Exit(1)
	}
	if token != "" {
		fmt.Printf("stopped after -max-pages; continue with: -resume %s\n", token)
	}
}
