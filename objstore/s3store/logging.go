package s3store

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"
)

// sdkLogger hands the SDK's log lines to slog. Left alone, the SDK prints
// every line to stderr whatever its level, such as a debug note on each
// ranged GET that it has no checksum to validate.
type sdkLogger struct{}

func (sdkLogger) Logf(classification logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if classification == logging.Warn {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if logger := slog.Default(); logger.Enabled(ctx, level) {
		logger.Log(ctx, level, fmt.Sprintf(format, v...), "source", "aws-sdk")
	}
}
