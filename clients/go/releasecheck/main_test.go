package main

import (
	"archive/zip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// newRepo makes a git repository with the files given (path -> content), commits them,
// then writes the untracked ones.
func newRepo(t *testing.T, committed, untracked map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(files map[string]string) {
		for name, content := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	gitCmd := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitCmd("init", "-q")
	write(committed)
	gitCmd("add", "-A")
	gitCmd("commit", "-q", "-m", "c")
	write(untracked)
	return dir
}

func zipNames(t *testing.T, path string) []string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

func TestZipHoldsWhatGitHoldsAndNoNestedModule(t *testing.T) {
	repo := newRepo(t, map[string]string{
		".gitignore":           "sub/.cache/\n",
		"sub/go.mod":           "module example.com/repo/sub\n\ngo 1.26.0\n",
		"sub/a.go":             "package sub\n",
		"sub/data/config.json": "{}\n",
		"sub/tool/go.mod":      "module example.com/repo/sub/tool\n\ngo 1.26.0\n",
		"sub/tool/main.go":     "package main\n\nfunc main() {}\n",
		"other/b.go":           "package other\n",
	}, map[string]string{
		"sub/untracked.go":    "package sub\n",
		"sub/.cache/x/go.mod": "module x\n",
		"sub/.cache/blob":     "ignored\n",
	})
	out := t.TempDir()
	if err := run(repo, "HEAD", "sub", "v0.3.1", out); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(out, "example.com", "repo", "sub", "@v")
	got := zipNames(t, filepath.Join(dir, "v0.3.1.zip"))
	want := []string{
		"example.com/repo/sub@v0.3.1/a.go",
		"example.com/repo/sub@v0.3.1/data/config.json",
		"example.com/repo/sub@v0.3.1/go.mod",
	}
	if !slices.Equal(got, want) {
		t.Errorf("zip holds %v, want %v", got, want)
	}
	for name, want := range map[string]string{
		"list":        "v0.3.1\n",
		"v0.3.1.mod":  "module example.com/repo/sub\n\ngo 1.26.0\n",
		"v0.3.1.info": `{"Version":"v0.3.1","Time":"`,
	} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), want) {
			t.Errorf("%s = %q, want it to start with %q", name, data, want)
		}
	}
}

func TestRefusesWhatAConsumerCannotUse(t *testing.T) {
	for _, tc := range []struct {
		name, goMod, version, wantErr string
	}{
		{"directory replace", "module example.com/repo/sub\n\ngo 1.26.0\n\nreplace example.com/dep => ../dep\n", "v0.1.0", "replaces example.com/dep with a directory"},
		{"not canonical", "module example.com/repo/sub\n\ngo 1.26.0\n", "v1.2", "not a canonical semantic version"},
		{"no v", "module example.com/repo/sub\n\ngo 1.26.0\n", "1.2.3", "not a canonical semantic version"},
		{"major version without /vN", "module example.com/repo/sub\n\ngo 1.26.0\n", "v2.0.0", "v2"},
		{"/v2 path with v1", "module example.com/repo/sub/v2\n\ngo 1.26.0\n", "v1.0.0", "v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := newRepo(t, map[string]string{"sub/go.mod": tc.goMod, "sub/a.go": "package sub\n"}, nil)
			err := run(repo, "HEAD", "sub", tc.version, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("run: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
