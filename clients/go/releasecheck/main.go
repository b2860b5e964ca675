// Command releasecheck writes one version of a Go module, zipped from a git revision, into
// a file-system module proxy: $out/<module>/@v/{list,VERSION.info,VERSION.mod,VERSION.zip},
// the layout `GOPROXY=file://$out` serves (https://go.dev/ref/mod#goproxy-protocol).
//
// The zip is made the way a module proxy makes it from a tag: from the files git has at
// that revision (git archive, so nothing git-ignored such as .gomodcache ends up in it),
// without nested modules (this folder has its own go.mod, so it stays out), checked by
// golang.org/x/mod/zip against the limits the go command enforces.
//
//	go run . -repo /path/to/repo -rev HEAD -subdir clients/go -version v0.1.0 -out /tmp/proxy
//
// It prints the module path, so the caller need not parse go.mod itself.
package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

func main() {
	repo := flag.String("repo", "", "absolute path of the git work tree")
	rev := flag.String("rev", "HEAD", "git revision to zip (a tag, a commit, HEAD)")
	subdir := flag.String("subdir", "", "the module's folder inside the repository, e.g. clients/go")
	version := flag.String("version", "", "the version to publish, e.g. v0.1.0")
	out := flag.String("out", "", "the proxy folder to write into")
	flag.Parse()
	if err := run(*repo, *rev, *subdir, *version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "releasecheck:", err)
		os.Exit(1)
	}
}

func run(repo, rev, subdir, version, out string) error {
	if repo == "" || out == "" || version == "" {
		return errors.New("-repo, -version and -out are required")
	}
	if !semver.IsValid(version) || semver.Canonical(version) != version || semver.Build(version) != "" {
		return fmt.Errorf("%q is not a canonical semantic version (vMAJOR.MINOR.PATCH[-pre])", version)
	}
	modPath := filepath.ToSlash(filepath.Join(subdir, "go.mod"))
	goMod, err := git(repo, "show", rev+":"+modPath)
	if err != nil {
		return err
	}
	f, err := modfile.Parse(modPath, goMod, nil) // not ParseLax: it drops replace lines
	if err != nil {
		return err
	}
	if f.Module == nil {
		return fmt.Errorf("%s at %s has no module line", modPath, rev)
	}
	m := module.Version{Path: f.Module.Mod.Path, Version: version}
	if err := module.Check(m.Path, m.Version); err != nil {
		return err
	}
	// A module in a subdirectory is released by the tag "<subdir>/vX.Y.Z"; its major version
	// must agree with the path (v2 and later need a /vN suffix).
	if _, major, ok := module.SplitPathVersion(m.Path); ok {
		if err := module.CheckPathMajor(version, major); err != nil {
			return err
		}
	}
	// A consumer ignores the module's replace lines: a directory replace means the module
	// was built and tested against code its consumers will never get.
	for _, r := range f.Replace {
		if modfile.IsDirectoryPath(r.New.Path) {
			return fmt.Errorf("%s replaces %s with a directory: consumers ignore it and build something else", modPath, r.Old.Path)
		}
	}

	escPath, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	escVersion, err := module.EscapeVersion(m.Version)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	// modzip.CreateFromVCS does this too, but refuses a git worktree (its .git is a file).
	tree, err := os.MkdirTemp("", "releasecheck-tree-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	if err := exportTree(repo, rev, subdir, tree); err != nil {
		return err
	}
	var zipBuf bytes.Buffer
	if err := modzip.CreateFromDir(&zipBuf, m, filepath.Join(tree, filepath.FromSlash(subdir))); err != nil {
		return err
	}
	commitTime, err := git(repo, "show", "-s", "--format=%cI", rev)
	if err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(commitTime)))
	if err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    string
	}{version, t.UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		escVersion + ".info": info,
		escVersion + ".mod":  goMod,
		escVersion + ".zip":  zipBuf.Bytes(),
		"list":               []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	zipPath := filepath.Join(dir, escVersion+".zip")
	if _, err := modzip.CheckZip(m, zipPath); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "releasecheck: %s@%s from %s:%s, zip %d bytes\n", m.Path, version, rev, subdir, zipBuf.Len())
	fmt.Println(m.Path)
	return nil
}

// exportTree writes the files git has at rev under subdir into dst, as `git archive` sees
// them (what a module proxy zips for a tag), with line endings as committed.
func exportTree(repo, rev, subdir, dst string) error {
	args := []string{"-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=zip", rev}
	if subdir != "" {
		args = append(args, subdir)
	}
	data, err := git(repo, args...)
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() {
			continue
		}
		if !zf.Mode().IsRegular() {
			return fmt.Errorf("%s at %s is not a regular file (a symlink?): module zips hold regular files only", zf.Name, rev)
		}
		name := filepath.Join(dst, filepath.FromSlash(zf.Name))
		if !strings.HasPrefix(name, dst+string(filepath.Separator)) {
			return fmt.Errorf("git archive entry %q escapes the tree", zf.Name)
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		r, err := zf.Open()
		if err != nil {
			return err
		}
		content, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return err
		}
		if err := os.WriteFile(name, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func git(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
