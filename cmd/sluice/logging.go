package main

import (
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "console", "log format: console (human) or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
}

// build returns a zap logger writing to w.
func (l *logFlags) build(w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(l.level); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	var enc zapcore.Encoder
	switch l.format {
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(cfg)
	case "json":
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	default:
		return nil, fmt.Errorf("--log-format: want console or json, got %q", l.format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
