package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// s3Opts are the flags every s3 subcommand shares.
type s3Opts struct {
	endpoint, bucket, prefix string
	count, conc              int
	blockSize, deviceSize    int64
	want                     int
	out                      string
}

func s3Main(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageErr("s3 needs a subcommand: mb, put, get, count, rm")
	}
	fs := flag.NewFlagSet("s3 "+args[0], flag.ContinueOnError)
	var o s3Opts
	fs.StringVar(&o.endpoint, "endpoint", "", "S3 endpoint (default $OBJBACKER_TEST_S3_ENDPOINT)")
	fs.StringVar(&o.bucket, "bucket", "", "bucket")
	fs.StringVar(&o.prefix, "prefix", "", "key prefix, as objbacker's s3://bucket/prefix stores it (with the slash)")
	fs.IntVar(&o.count, "count", 256, "objects to PUT or GET")
	fs.IntVar(&o.conc, "conc", 16, "requests in flight")
	fs.Int64Var(&o.blockSize, "block-size", 1<<20, "object size in bytes")
	fs.Int64Var(&o.deviceSize, "device-size", 0, "s3backer-filesize metadata on PUT (default count × block size)")
	fs.IntVar(&o.want, "want", -1, "count: the number of block objects expected")
	fs.StringVar(&o.out, "out", "", "put/get: write the result JSON here")
	if err := fs.Parse(args[1:]); err != nil {
		return usageErr(err.Error())
	}
	client, err := newS3Client(ctx, o.endpoint, o.conc)
	if err != nil {
		return err
	}
	switch args[0] {
	case "mb":
		return makeBuckets(ctx, client, fs.Args())
	case "put", "get":
		if o.bucket == "" || o.out == "" {
			return usageErr("s3 put/get need --bucket and --out")
		}
		res, err := transfer(ctx, client, args[0], o)
		if err != nil {
			return err
		}
		return writeJSON(o.out, res)
	case "count":
		return countBlocks(ctx, client, o)
	case "rm":
		return removePrefix(ctx, client, o)
	default:
		return usageErr("unknown s3 subcommand " + args[0])
	}
}

func makeBuckets(ctx context.Context, client *s3.Client, names []string) error {
	for _, name := range names {
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	return nil
}

// s3Result is what bench run reads back from put and get.
type s3Result struct {
	Kind    string  `json:"kind"`
	Op      string  `json:"op"`
	Ops     int     `json:"ops"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	P99ms   float64 `json:"p99_ms"`
}

// transfer PUTs or GETs o.count whole objects, named and tagged as
// objbacker names and tags its blocks, with o.conc requests in flight.
func transfer(ctx context.Context, client *s3.Client, op string, o s3Opts) (s3Result, error) {
	size := o.deviceSize
	if size == 0 {
		size = int64(o.count) * o.blockSize
	}
	meta := map[string]string{
		"s3backer-blocksize": strconv.FormatInt(o.blockSize, 10),
		"s3backer-filesize":  strconv.FormatInt(size, 10),
	}
	lat := make([]time.Duration, o.count)
	var next atomic.Int64
	errs := make(chan error, o.conc)
	var wg sync.WaitGroup
	start := time.Now()
	for range o.conc {
		wg.Go(func() {
			buf := make([]byte, o.blockSize)
			if op == "put" {
				fillRandom(buf)
			}
			for {
				i := int(next.Add(1) - 1)
				if i >= o.count {
					return
				}
				key := fmt.Sprintf("%s%08x", o.prefix, i)
				t := time.Now()
				var err error
				if op == "put" {
					// A distinct object each time, as fio's blocks are.
					binary.LittleEndian.PutUint64(buf, uint64(i))
					err = putBlock(ctx, client, o.bucket, key, buf, meta)
				} else {
					err = getBlock(ctx, client, o.bucket, key, buf)
				}
				if err != nil {
					errs <- fmt.Errorf("%s %s/%s: %w", op, o.bucket, key, err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return s3Result{}, err
	}
	slices.Sort(lat)
	return s3Result{
		Kind:    "s3",
		Op:      op,
		Ops:     o.count,
		Bytes:   int64(o.count) * o.blockSize,
		Seconds: elapsed.Seconds(),
		P99ms:   float64(lat[(len(lat)*99)/100]) / float64(time.Millisecond),
	}, nil
}

// fillRandom makes data that neither side can compress or take for zeros.
func fillRandom(buf []byte) {
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rand.Uint64())
	}
}

func putBlock(ctx context.Context, client *s3.Client, bucket, key string, data []byte, meta map[string]string) error {
	_, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/x-s3backer-block"),
		Metadata:      meta,
	})
	return err
}

// getBlock reads a whole object into buf, without a Range header, as
// objbacker fetches a block, and insists on exactly len(buf) bytes.
func getBlock(ctx context.Context, client *s3.Client, bucket, key string, buf []byte) error {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return err
	}
	var extra [1]byte
	if n, _ := out.Body.Read(extra[:]); n > 0 {
		return fmt.Errorf("object longer than %d bytes", len(buf))
	}
	return nil
}

var blockKey = regexp.MustCompile(`^[0-9a-f]{8}$`)

// countBlocks checks that a durable write left exactly o.want block objects
// of the block size under the prefix.
func countBlocks(ctx context.Context, client *s3.Client, o s3Opts) error {
	var blocks, wrongSize int
	err := listKeys(ctx, client, o.bucket, o.prefix, func(obj types.Object) {
		if blockKey.MatchString(aws.ToString(obj.Key)[len(o.prefix):]) {
			blocks++
			if aws.ToInt64(obj.Size) != o.blockSize {
				wrongSize++
			}
		}
	})
	if err != nil {
		return err
	}
	if (o.want >= 0 && blocks != o.want) || wrongSize > 0 {
		return fmt.Errorf("s3://%s/%s holds %d block objects (%d not %d bytes), want %d",
			o.bucket, o.prefix, blocks, wrongSize, o.blockSize, o.want)
	}
	return nil
}

// removePrefix deletes everything under the prefix between repeats, so the
// MinIO data directory stays small.
func removePrefix(ctx context.Context, client *s3.Client, o s3Opts) error {
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(o.bucket),
			Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)},
		})
		if err == nil && len(out.Errors) > 0 {
			err = fmt.Errorf("%s: %s", aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
		batch = batch[:0]
		return err
	}
	var flushErr error
	err := listKeys(ctx, client, o.bucket, o.prefix, func(obj types.Object) {
		batch = append(batch, types.ObjectIdentifier{Key: obj.Key})
		if len(batch) == 1000 && flushErr == nil {
			flushErr = flush()
		}
	})
	if err = errors.Join(err, flushErr); err != nil {
		return fmt.Errorf("removing s3://%s/%s: %w", o.bucket, o.prefix, err)
	}
	return flush()
}

func listKeys(ctx context.Context, client *s3.Client, bucket, prefix string, fn func(types.Object)) error {
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, obj := range page.Contents {
			fn(obj)
		}
	}
	return nil
}
