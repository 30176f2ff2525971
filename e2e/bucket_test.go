//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// blockKey is how s3backer names a block: the prefix, then the block number
// as 8 lower-case hex digits.
var blockKey = regexp.MustCompile(`^[0-9a-f]{8}$`)

// descriptorKey is objbacker's own record of the geometry, and
// cleanStopKey its record of the last clean stop (blockmap.DescriptorKey,
// blockmap.CleanStopKey): the other objects it writes.
const (
	descriptorKey = "objbacker-device"
	cleanStopKey  = "objbacker-clean-stop"
)

// bucketReport is what checkBucket found.
type bucketReport struct {
	blocks     int // well-formed block objects
	descriptor bool
	problems   []string
}

// checkBucket reads every object under prefix: each must be a block named
// as s3backer names it, exactly blockSize long and not all zeros (objbacker
// deletes a block that becomes zero), or the descriptor.
func checkBucket(t *testing.T, endpoint, bucket, prefix string, blockSize int64) bucketReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := s3Client(ctx, t, endpoint)
	var r bucketReport
	problem := func(format string, args ...any) {
		if len(r.problems) < 20 {
			r.problems = append(r.problems, fmt.Sprintf(format, args...))
		}
	}
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing bucket %s: %v", bucket, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			name, ok := strings.CutPrefix(key, prefix)
			switch {
			case ok && name == descriptorKey:
				r.descriptor = true
			case ok && name == cleanStopKey:
			case !ok || !blockKey.MatchString(name):
				problem("%s: not a block object of prefix %q", key, prefix)
			case aws.ToInt64(obj.Size) != blockSize:
				problem("%s: %d bytes, not the block size %d", key, aws.ToInt64(obj.Size), blockSize)
			default:
				zero, err := allZero(ctx, client, bucket, key)
				switch {
				case err != nil:
					problem("%s: %v", key, err)
				case zero:
					problem("%s: all zeros", key)
				default:
					r.blocks++
				}
			}
		}
	}
	if !r.descriptor {
		problem("no %s%s", prefix, descriptorKey)
	}
	return r
}

func allZero(ctx context.Context, client *s3.Client, bucket, key string) (bool, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return false, err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return false, err
	}
	for _, b := range data {
		if b != 0 {
			return false, nil
		}
	}
	return true, nil
}

// s3Client returns a client for the test's S3 server, with the credentials
// the test command exports (AWS_*).
func s3Client(ctx context.Context, t *testing.T, endpoint string) *s3.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithDefaultRegion("us-east-1"))
	if err != nil {
		t.Fatalf("loading AWS configuration: %v", err)
	}
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: transport}
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
}
