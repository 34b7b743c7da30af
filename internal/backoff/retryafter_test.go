package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var now = time.Date(2025, time.March, 14, 12, 0, 0, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"surrounding spaces", "  120 ", 2 * time.Minute, true},
		{"tabs", "\t5\t", 5 * time.Second, true},
		{"leading zeros", "007", 7 * time.Second, true},
		{"largest that fits", "9223372036", 9223372036 * time.Second, true},
		{"IMF-fixdate", "Fri, 14 Mar 2025 12:01:30 GMT", 90 * time.Second, true},
		{"RFC 850", "Friday, 14-Mar-25 12:02:00 GMT", 2 * time.Minute, true},
		{"asctime", "Fri Mar 14 12:00:45 2025", 45 * time.Second, true},
		{"asctime single-digit day", "Sun Mar  2 12:00:00 2025", 0, true},
		{"date now", "Fri, 14 Mar 2025 12:00:00 GMT", 0, true},
		{"date in the past", "Thu, 13 Mar 2025 12:00:00 GMT", 0, true},
		{"date far in the future saturates", "Fri, 31 Dec 9999 23:59:59 GMT", time.Duration(1<<63 - 1), true},
		{"date with spaces", "  Fri, 14 Mar 2025 12:00:10 GMT ", 10 * time.Second, true},
		{"negative", "-5", 0, false},
		{"plus sign", "+5", 0, false},
		{"fraction", "1.5", 0, false},
		{"unit", "10s", 0, false},
		{"inner space", "1 0", 0, false},
		{"empty", "", 0, false},
		{"only spaces", "   ", 0, false},
		{"garbage", "soon", 0, false},
		{"overflows Duration", "9223372037", 0, false},
		{"overflows int64", "99999999999999999999999", 0, false},
		{"bad date", "Fri, 32 Mar 2025 12:00:00 GMT", 0, false},
		{"ISO date is not an HTTP-date", "2025-03-14T12:01:00Z", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

// FuzzParseRetryAfter: never panics, a failure always returns 0, a success
// is never negative.
func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Fri, 14 Mar 2025 12:01:30 GMT")
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %s, false", v, d)
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %s, negative", v, d)
		}
	})
}
