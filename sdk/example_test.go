package sdk_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
	"github.com/gridnode/gridnode/transport"
)

// exampleNode starts a node on a loopback port for the examples and returns
// a client Config for it. In real use the node is a `gridnode agent`
// elsewhere and the Config comes from a profile (see ExampleLoadProfile).
func exampleNode() (*sched.Node, sdk.Config, func()) {
	dir, err := os.MkdirTemp("", "gridnode-example-")
	if err != nil {
		log.Fatal(err)
	}
	n, err := sched.StartNode(context.Background(), sched.Config{
		DataDir: dir, ListenAddr: "127.0.0.1:0", Isolation: plugins.InProcess,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	cert, key, err := transport.IssueClient(n.TLSDir(), "example", filepath.Join(dir, "client"))
	if err != nil {
		log.Fatal(err)
	}
	cfg := sdk.Config{Addr: n.Addr(), CA: filepath.Join(n.TLSDir(), "ca.pem"), Cert: cert, Key: key}
	return n, cfg, func() { n.Close(); os.RemoveAll(dir) }
}

// Run a job end to end: upload a module, submit items, read the results.
func Example() {
	_, cfg, stop := exampleNode()
	defer stop()
	ctx := context.Background()

	c, err := sdk.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mod, err := c.PushModule(ctx, testdata.Echo) // echo.wasm copies its input to its output
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.Submit(ctx, api.JobSpec{Module: mod.Hash}, sdk.Items([]byte("hello"), []byte("grid")))
	if err != nil {
		log.Fatal(err)
	}
	var lines []string
	rs := c.Results(job.JobID, sdk.ResultsOptions{Follow: true})
	for r, err := range rs.All(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("item %d: %s %q", r.Index, r.Status, r.Output))
	}
	slices.Sort(lines) // results arrive in commit order
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Println("job", rs.Status().State)
	// Output:
	// item 0: ok "hello"
	// item 1: ok "grid"
	// job done
}

// Resume reading results after a disconnect: keep the cursor, start again from it.
func ExampleResults_Cursor() {
	_, cfg, stop := exampleNode()
	defer stop()
	ctx := context.Background()
	c, err := sdk.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mod, _ := c.PushModule(ctx, testdata.Echo)
	job, err := c.Submit(ctx, api.JobSpec{Module: mod.Hash}, sdk.Range(0, 10))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Wait(ctx, job.JobID, 0, nil); err != nil {
		log.Fatal(err)
	}
	rs := c.Results(job.JobID, sdk.ResultsOptions{})
	for range 4 {
		rs.Next(ctx)
	}
	cursor := rs.Cursor()
	rs.Close() // the connection "breaks" here

	rest := 0
	for _, err := range c.Results(job.JobID, sdk.ResultsOptions{Cursor: cursor}).All(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		rest++
	}
	fmt.Printf("read 4, resumed after cursor %d, read %d more\n", cursor, rest)
	// Output:
	// read 4, resumed after cursor 4, read 6 more
}

// Items come from any iterator: a range, lines of a file, files of a directory.
func ExampleRange() {
	for in, _ := range sdk.Range(7, 10) {
		fmt.Printf("%s ", in)
	}
	fmt.Println()
	// Output: 7 8 9
}

// List the cluster's members as a node sees them, and whether it holds a
// quorum (a node without one refuses jobs with code no_quorum).
func ExampleClient_Members() {
	_, cfg, stop := exampleNode()
	defer stop()
	ctx := context.Background()
	c, err := sdk.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	m, err := c.Members(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("quorum %v, %d member(s)\n", m.Quorum, len(m.Members))
	for _, mb := range m.Members {
		fmt.Printf("%s monitor=%v self=%v\n", mb.State, mb.Monitor, mb.Self)
	}
	// Output:
	// quorum true, 1 member(s)
	// alive monitor=true self=true
}
