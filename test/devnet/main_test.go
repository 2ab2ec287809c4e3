package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The harness judges aggregations by the nodes' logs: a deadline is late, the final stop's
// abandoned call is neither late nor refused, and any other failure is a refusal.
func TestSubmissionFailures(t *testing.T) {
	log := filepath.Join(t.TempDir(), "node1.log")
	lines := `level=WARN msg="Submission failed" node=1 slot=9 duty=aggregator validators=5 count=5 reason=late err="submit: context deadline exceeded"
level=WARN msg="Submission failed" node=1 slot=10 duty=aggregator validators=5 count=5 reason=beacon_error err="submit: 400 Bad Request"
level=INFO msg="Submission abandoned: node stopping" node=1 slot=79 duty=aggregator validators=5 count=5 err="submit 5 aggregates: beacon nodes: stopped"
level=WARN msg="Submission failed" node=1 slot=11 duty=attester validators=5 count=5 reason=beacon_error err="submit: 400 Bad Request"
level=INFO msg=Submitted node=1 slot=12 duty=aggregator validators=5 count=5
`
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := []*dnode{{index: 1, logPath: log}, {index: 2, logPath: filepath.Join(t.TempDir(), "missing.log")}}
	late, refused, abandoned := submissionFailures(nodes, "aggregator")
	// The missing log counts as one refusal: the harness cannot tell, so it counts against.
	if late != 1 || refused != 2 || abandoned != 1 {
		t.Errorf("late %d, refused %d, abandoned %d; want 1, 2, 1", late, refused, abandoned)
	}
}
