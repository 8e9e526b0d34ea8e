// Command benchpush measures the push: one artifact to N hosts, on a real shaped
// network when it can build one (root and ip netns: a namespace per host, a bridge per
// rack, rack uplinks to a spine, tc tbf on both ends of every link), otherwise on
// loopback with the caps inside the clients. In one run and on one topology it times
//
//	locality  our fetcher + tracker with the locality peer policy
//	random    the same with a random peer policy
//	http      every host downloading the artifact over plain HTTP from the origin
//	aria2     a stock swarm: aria2c clients and an aria2c seed with opentracker
//
// and prints each method's wall time until every host holds a verified copy, the
// Kumar–Ross lower bound for the topology, the ratio to it, and the CPU used.
//
// `make bench-push` runs it. The hidden subcommands origin and host are what runs
// inside the namespaces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "origin" {
		err = runOrigin(ctx, os.Args[2:])
	} else if len(os.Args) > 1 && os.Args[1] == "host" {
		err = runHost(ctx, os.Args[2:])
	} else {
		err = runBench(ctx, os.Args[1:])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "benchpush:", err)
		os.Exit(1)
	}
}
