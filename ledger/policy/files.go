package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// dataDir holds the data files of a set; a file's directory below it is where
// its object goes in the data document, so data/custos/config/data.json is
// data.custos.config.
const dataDir = "data"

// file is one file of a policy set.
type file struct {
	path string
	src  []byte
}

func (f file) isRego() bool { return strings.HasSuffix(f.path, ".rego") }

func (f file) isTest() bool { return strings.HasSuffix(f.path, "_test.rego") }

// readFiles returns the files that make up the set in fsys, sorted by path:
// every .rego file, and every .json, .yaml or .yml file under data/.
// Files and directories starting with "." or "_", and directories named
// testdata, are skipped, as the go tool does, so a set can live beside Go
// code, editor backups and half-written files.
func readFiles(fsys fs.FS) ([]file, error) {
	var files []file
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || !isSetFile(p) {
			return nil
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, file{path: p, src: src})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	return files, nil
}

func isSetFile(p string) bool {
	if strings.HasSuffix(p, ".rego") {
		return true
	}
	if !strings.HasPrefix(p, dataDir+"/") {
		return false
	}
	switch path.Ext(p) {
	case ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// revision identifies a set by its content: SHA-256 over each file's path,
// length and bytes, in path order.
func revision(files []file) string {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(f.path))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(f.src))))
		h.Write([]byte{0})
		h.Write(f.src)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// parseModules parses the Rego files as Rego v1.
func parseModules(files []file) (map[string]*ast.Module, error) {
	modules := map[string]*ast.Module{}
	for _, f := range files {
		if !f.isRego() {
			continue
		}
		m, err := ast.ParseModuleWithOpts(f.path, string(f.src), parserOptions())
		if err != nil {
			return nil, err
		}
		modules[f.path] = m
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("no .rego files")
	}
	return modules, nil
}

func parserOptions() ast.ParserOptions {
	return ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
}

// loadData builds the data document from the data files. Objects at the same
// path merge; the same key defined twice is an error.
func loadData(files []file) (map[string]any, error) {
	root := map[string]any{}
	for _, f := range files {
		if f.isRego() {
			continue
		}
		var v any
		if err := util.Unmarshal(f.src, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: a data file must hold an object", f.path)
		}
		node := root
		dir := strings.TrimPrefix(path.Dir(f.path), dataDir)
		for seg := range strings.SplitSeq(strings.Trim(dir, "/"), "/") {
			if seg == "" {
				continue
			}
			switch next := node[seg].(type) {
			case map[string]any:
				node = next
			case nil:
				child := map[string]any{}
				node[seg] = child
				node = child
			default:
				return nil, fmt.Errorf("%s: %s is already a value, not an object", f.path, seg)
			}
		}
		if err := merge(node, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
	}
	return root, nil
}

func merge(dst, src map[string]any) error {
	for k, v := range src {
		old, exists := dst[k]
		if !exists {
			dst[k] = v
			continue
		}
		a, aok := old.(map[string]any)
		b, bok := v.(map[string]any)
		if !aok || !bok {
			return fmt.Errorf("%s is defined twice", k)
		}
		if err := merge(a, b); err != nil {
			return fmt.Errorf("%s.%w", k, err)
		}
	}
	return nil
}
