package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the
// module version or VCS revision from the build info is used.
var version = ""

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		if v == "" {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v = "dev-" + s.Value[:12]
				}
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	return v
}

func init() {
	c := &command{name: "version", usage: "", summary: "Print Sluice's version"}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		fs := newFlagSet(c, stderr)
		if code, ok := parseFlags(fs, args, stdout); !ok {
			return code
		}
		fmt.Fprintf(stdout, "sluice %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	}
	register(c)
}
