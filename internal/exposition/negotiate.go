// Content negotiation: the format from Accept (expfmt), the coding from
// Accept-Encoding.

package exposition

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/common/expfmt"
)

// acceptedFormats are promhttp's with EnableOpenMetrics.
var acceptedFormats = expfmt.DefaultOpenMetricsAcceptedFormats()

func negotiateFormat(h http.Header) expfmt.Format {
	return negotiate(h).format
}

// negotiation is the format negotiated for an Accept header, and how the
// live section is written in it.
type negotiation struct {
	format expfmt.Format
	live   liveKind
}

// negotiated remembers the negotiation of the Accept headers seen, up to
// maxNegotiated of them: scrapers send the same header every time, and
// expfmt's negotiation costs a fifth of a cached scrape.
var (
	negotiated      sync.Map // Accept header → *negotiation
	negotiatedCount atomic.Int32
)

const maxNegotiated = 64

func negotiate(h http.Header) *negotiation {
	accept := h.Get("Accept")
	if n, ok := negotiated.Load(accept); ok {
		return n.(*negotiation)
	}
	f := expfmt.NegotiateAccept(h, acceptedFormats...)
	n := &negotiation{format: f, live: liveKindOf(f)}
	if negotiatedCount.Load() < maxNegotiated && negotiatedCount.Add(1) <= maxNegotiated {
		negotiated.Store(accept, n)
	}
	return n
}

// negotiateEncoding picks identity or gzip from Accept-Encoding as promhttp
// does: of the codings it offers (identity, then gzip), the one with the
// greatest q wins, identity on a tie; "" when both are refused (q=0).
// client_golang keeps its negotiator internal and the standard library
// has none, hence these few lines.
func negotiateEncoding(h http.Header) string {
	identity, gzip := -1.0, -1.0
	for _, v := range h.Values("Accept-Encoding") {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.TrimSpace(coding)
			q := 1.0
			if p := strings.TrimSpace(params); p != "" {
				qs, ok := strings.CutPrefix(p, "q=")
				f, err := strconv.ParseFloat(qs, 64)
				if !ok || err != nil || f < 0 || f > 1 {
					continue
				}
				q = f
			}
			if coding == "identity" || coding == "*" {
				identity = max(identity, q)
			}
			if coding == "gzip" || coding == "*" {
				gzip = max(gzip, q)
			}
		}
	}
	best, q := "identity", identity
	if gzip > identity {
		best, q = "gzip", gzip
	}
	if q == 0 {
		return "" // the best offer is refused: so are both
	}
	return best
}
