package template

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSuggest(t *testing.T) {
	t.Parallel()
	known := []string{"name", "handler_class", "handler_config", "depends_on_steps"}
	cases := []struct{ in, want string }{
		{"nmae", "name"},                        // transposition = 2 edits
		{"handler_clas", "handler_class"},       // deletion
		{"handler_confg", "handler_config"},     // closest of two similar fields
		{"depends_on_step", "depends_on_steps"}, // one letter short
		{"dependencies", ""},                    // too far
		{"nam", "name"},                         // short word, distance 1
		{"zz", ""},                              // short word, distance 2 is not a suggestion
		{"héndler_class", "handler_class"},      // runes, not bytes
		{strings.Repeat("x", 10000), ""},        // long input is cheap
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, suggest(tc.in, known), tc.in)
	}
}

func TestLongCycleMessageIsBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("name: n\nstep_templates:\n")
	const n = 500
	for i := range n {
		fmt.Fprintf(&b, "  - {name: s%d, handler_class: X, depends_on_step: s%d}\n", i, (i+1)%n)
	}
	_, errs := Parse("t.yml", []byte(b.String()), "")
	require.Len(t, errs, 1)
	require.Contains(t, errs[0].Msg, "cycle: s0 -> s1 -> ")
	require.Contains(t, errs[0].Msg, "-> ... (479 more) -> s499 -> s0 (each step depends on the next)")
	require.Less(t, len(errs[0].Msg), 400)
}
