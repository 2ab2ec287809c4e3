package node

import (
	"context"
	"runtime/pprof"
	"testing"
)

// A profile splits by duty type only if every subcommittee's duty carries its base type's label.
func TestDutyLabels(t *testing.T) {
	for in, want := range map[string]string{
		dutyAttester:             dutyAttester,
		dutySyncSelection + "/2": dutySyncSelection,
		dutySyncContrib + "/0":   dutySyncContrib,
		dutyAggregator:           dutyAggregator,
	} {
		pprof.Do(context.Background(), dutyLabels(in), func(ctx context.Context) {
			if got, ok := pprof.Label(ctx, "duty"); !ok || got != want {
				t.Errorf("dutyLabels(%q): label duty=%q (set %v), want %q", in, got, ok, want)
			}
		})
	}
}
