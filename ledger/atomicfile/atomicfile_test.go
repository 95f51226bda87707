package atomicfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"custos.dev/ledger/atomicfile"
)

// Write replaces the content, leaves no temporary file, keeps the mode, and
// with OverwriteReplaced zeroes the replaced file's bytes (seen through a
// second link to its inode).
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "k")
	if err := atomicfile.Write(path, []byte("first secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "old-inode")
	if err := os.Link(path, link); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(path, []byte("second"), 0o600, atomicfile.OverwriteReplaced()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "second" {
		t.Errorf("content %q", b)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode())
	}
	if b, _ := os.ReadFile(link); bytes.Contains(b, []byte("secret")) || len(b) != len("first secret") {
		t.Errorf("the replaced file still holds %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	// Without the option the replaced inode is left as it was.
	if err := os.Link(path, link+"2"); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(path, []byte("third"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(link + "2"); string(b) != "second" {
		t.Errorf("without OverwriteReplaced the old inode reads %q", b)
	}
}
