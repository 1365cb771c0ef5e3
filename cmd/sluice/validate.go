package main

import (
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/config"
)

func init() {
	c := &command{
		name:    "validate",
		usage:   "-f FILE|DIR [-f FILE|DIR ...]",
		summary: "Check configuration files; print each problem as FILE:LINE: message",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		fs := newFlagSet(c, stderr)
		var files stringList
		var lf logFlags
		fs.Var(&files, "f", "configuration file or directory (repeatable; *.yaml and *.yml in a directory)")
		lf.register(fs)
		if code, ok := parseFlags(fs, args, stdout); !ok {
			return code
		}
		files = append(files, fs.Args()...)
		if len(files) == 0 {
			fmt.Fprintln(stderr, "sluice validate: no files: give -f FILE (or a directory)")
			fs.Usage()
			return exitUsage
		}
		log, err := lf.build(stderr)
		if err != nil {
			fmt.Fprintln(stderr, "sluice validate:", err)
			return exitUsage
		}
		defer func() { _ = log.Sync() }()
		return validate(files, stdout, log)
	}
	register(c)
}

// validate loads files and prints every diagnostic to stdout, one a line; the summary
// goes to the log. It returns exitOK when the configuration is valid, else exitInvalid.
func validate(files []string, stdout io.Writer, log *zap.Logger) int {
	cfg, diags := config.Load(files...)
	for _, d := range diags {
		fmt.Fprintln(stdout, d.String())
	}
	nerr, nwarn := len(diags.Errors()), len(diags.Warnings())
	if cfg == nil {
		log.Error("configuration is invalid", zap.Strings("files", files), zap.Int("errors", nerr), zap.Int("warnings", nwarn))
		return exitInvalid
	}
	log.Info("configuration is valid", zap.Strings("files", files), zap.Int("warnings", nwarn),
		zap.Int("clusters", len(cfg.Clusters)), zap.Int("listeners", len(cfg.Listeners)),
		zap.Int("rollouts", len(cfg.Rollouts)), zap.Int("templates", len(cfg.Templates)))
	return exitOK
}
