// Command staticserver serves one file's bytes on every request: the upper
// bound of what any /metrics endpoint serving a cached body can reach on
// this machine, measured beside the agent by bench/scrape-load.sh.
//
//	go run ./bench/staticserver -listen 127.0.0.1:9437 -body body.prom
//
// It is a plain net/http server, as minimal as a Go server gets: no mux, no
// negotiation, no timeouts, the Content-Type of the Prometheus text format.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	file := flag.String("body", "", "file whose bytes every response carries")
	flag.Parse()
	body, err := os.ReadFile(*file)
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Addr()) // the script reads the address from here
	length := strconv.Itoa(len(body))
	log.Fatal(http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		h.Set("Content-Length", length)
		_, _ = w.Write(body)
	})))
}
