package sdk_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridnode/gridnode/sdk"
)

func TestProfileRoundTripAndOverride(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p", "profile.json")
	p := sdk.Profile{Addr: "127.0.0.1:7480", CA: "ca.pem", Cert: "/abs/cli.pem", Key: "cli.key", NodeID: "n1"}
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := sdk.LoadProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != p.Addr || got.CA != filepath.Join(filepath.Dir(path), "ca.pem") || got.Cert != "/abs/cli.pem" {
		t.Fatalf("loaded %+v", got)
	}
	t.Setenv(sdk.EnvAddr, "10.0.0.9:1")
	if got, _ := sdk.LoadProfile(path); got.Addr != "10.0.0.9:1" {
		t.Fatalf("%s did not override: %+v", sdk.EnvAddr, got)
	}
	if _, err := sdk.LoadProfile(filepath.Join(t.TempDir(), "none.json")); err == nil || !strings.Contains(err.Error(), "gridnode dev") {
		t.Fatalf("missing profile: %v", err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := sdk.LoadProfile(path); err == nil {
		t.Fatal("corrupt profile accepted")
	}
}

func TestInputSources(t *testing.T) {
	var lines []string
	for in, err := range sdk.Lines(strings.NewReader("a\nb b\n\nc")) {
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(in))
	}
	if strings.Join(lines, "|") != "a|b b||c" {
		t.Fatalf("lines %q", lines)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "b.txt"), []byte("B"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("A"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	names, items, err := sdk.DirFiles(dir)
	if err != nil || strings.Join(names, ",") != "a.txt,b.txt" {
		t.Fatalf("names %v %v", names, err)
	}
	var got []string
	for in, err := range items {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(in))
	}
	if strings.Join(got, "") != "AB" {
		t.Fatalf("dir items %q", got)
	}
	if _, _, err := sdk.DirFiles(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing dir accepted")
	}
}
