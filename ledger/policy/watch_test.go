package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Generous bound on how long a reload may take; the test waits on the
// callbacks, this only stops a broken watcher from hanging the test.
const watchDeadline = 30 * time.Second

func writeFile(t *testing.T, dir, name, src string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write then rename, as a deployment would, so the watcher never reads a
	// half-written file.
	tmp := filepath.Join(dir, ".tmp-"+filepath.Base(name)+"~")
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "decision.rego", allowAll)
	writeFile(t, dir, "decision_test.rego", allowAllTest)
	initial, err := Load(context.Background(), os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	engine := NewEngine(initial)

	loaded := make(chan *Set, 10)
	failed := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	baselined := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, dir, "", 5*time.Millisecond,
			func(s *Set) { engine.Swap(s); loaded <- s },
			func(err error) { failed <- err },
			func() { close(baselined) })
	}()
	<-baselined

	waitLoad := func() *Set {
		t.Helper()
		select {
		case s := <-loaded:
			return s
		case err := <-failed:
			t.Fatalf("unexpected error: %v", err)
		case <-time.After(watchDeadline):
			t.Fatal("no reload")
		}
		return nil
	}
	waitError := func() error {
		t.Helper()
		select {
		case s := <-loaded:
			t.Fatalf("loaded %s, want a refusal", s.Revision())
		case err := <-failed:
			return err
		case <-time.After(watchDeadline):
			t.Fatal("no error reported")
		}
		return nil
	}

	// A data change is picked up.
	writeFile(t, dir, "data/custos/config/data.json", `{"storage_regions": ["CN"]}`)
	second := waitLoad()
	if second.Revision() == initial.Revision() || engine.Active() != second {
		t.Fatalf("reload did not activate a new revision")
	}

	// A broken set is refused and the active one stays.
	writeFile(t, dir, "decision.rego", "package custos.decision\n\ndecision := {\n")
	if err := waitError(); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("error %v, want ErrInvalidPolicy", err)
	}
	if engine.Active() != second {
		t.Fatal("a broken set replaced the active one")
	}

	// So is a set whose tests fail.
	writeFile(t, dir, "decision.rego", `package custos.decision

decision := {"allow": false, "reasons": [{"code": "X", "message": "m"}], "obligations": []}
`)
	if err := waitError(); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("error %v, want ErrInvalidPolicy", err)
	}

	// Fixing it loads it.
	writeFile(t, dir, "decision.rego", allowAll+"\n# fixed\n")
	third := waitLoad()
	if engine.Active() != third || third.Revision() == second.Revision() {
		t.Fatal("the fixed set was not activated")
	}

	cancel()
	select {
	case <-done:
	case <-time.After(watchDeadline):
		t.Fatal("Watch did not return after cancel")
	}
	select {
	case s := <-loaded:
		t.Errorf("unexpected extra load %s", s.Revision())
	case err := <-failed:
		t.Errorf("unexpected extra error %v", err)
	default:
	}
}

func TestWatchReportsUnreadableDirOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	failed := make(chan error, 10)
	loaded := make(chan *Set, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, dir, 5*time.Millisecond, func(s *Set) { loaded <- s }, func(err error) { failed <- err }, AllowUntested())
	}()
	select {
	case err := <-failed:
		if !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("error %v", err)
		}
	case <-time.After(watchDeadline):
		t.Fatal("missing directory not reported")
	}

	// Once the directory appears with a valid set, it is loaded; the missing
	// directory was not reported again in between.
	writeFile(t, dir, "decision.rego", allowAll)
	select {
	case <-loaded:
	case <-time.After(watchDeadline):
		t.Fatal("set not loaded once the directory appeared")
	}
	cancel()
	<-done
	if n := len(failed); n != 0 {
		t.Errorf("the missing directory was reported %d more times", n)
	}
}
