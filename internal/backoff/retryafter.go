package backoff

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter parses an HTTP Retry-After header value (RFC 9110,
// section 10.2.3) into a delay relative to now. The value is either
// delay-seconds, a non-negative decimal integer (surrounding spaces and tabs
// are ignored), or an HTTP-date in any of the three forms net/http.ParseTime
// accepts (IMF-fixdate, obsolete RFC 850, asctime). A date in the past gives
// (0, true): retry at once. Anything else, including a negative number, a
// sign, a fraction or a number of seconds that does not fit a
// time.Duration, gives (0, false).
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(maxDuration/time.Second) {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now) // saturates instead of overflowing
	if d < 0 {
		return 0, true
	}
	return d, true
}

const maxDuration = time.Duration(1<<63 - 1)

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
