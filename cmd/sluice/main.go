// Command sluice shifts live traffic from a stable to a canary version of a service,
// watches both, and promotes or reverts on its own. Run `sluice --help`.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitInvalid = 1 // the command ran and found a problem (invalid config, failed call)
	exitUsage   = 2 // the command line itself was wrong
)

// command is one `sluice NAME` subcommand. Each lives in its own file and registers
// itself from init, so commands can be added without touching this file.
type command struct {
	name    string
	usage   string // one line: arguments after the name
	summary string // one line for `sluice --help`
	// run executes the command with its arguments (after the name) and returns the exit code.
	run func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("sluice: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printHelp(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help":
		if len(args) > 1 { // sluice help CMD: that command's help
			c, ok := commands[args[1]]
			if !ok {
				fmt.Fprintf(stderr, "sluice help: unknown command %q\n\n", args[1])
				printHelp(stderr)
				return exitUsage
			}
			return c.run([]string{"--help"}, stdout, stderr)
		}
		printHelp(stdout)
		return exitOK
	case "-h", "--help", "-help":
		printHelp(stdout)
		return exitOK
	case "--version", "-version":
		args[0] = "version"
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
		printHelp(stderr)
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "Sluice moves live traffic from stable to canary step by step, watches both, and promotes or reverts on its own.")
	fmt.Fprintln(w, "\nUsage:\n  sluice COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `sluice help COMMAND` (or `sluice COMMAND --help`) for a command's flags.")
}

// newFlagSet returns a flag set for c that prints c's usage and its flags on --help,
// and whose errors go to stderr. Parse errors yield exitUsage via parseFlags.
func newFlagSet(c *command, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nUsage:\n  sluice %s %s\n", c.summary, c.name, c.usage)
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; it returns (exit code, false) when the command must stop:
// exitOK after --help (usage printed to stdout), exitUsage on a bad flag.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" || a == "-help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, false
		}
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage, false
	}
	return exitOK, true
}

// stringList is a repeatable flag of paths (-f a -f b), also accepting commas (-f a,b);
// a value that names an existing path is taken whole, commas and all.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	if _, err := os.Stat(v); err == nil {
		*s = append(*s, v)
		return nil
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
