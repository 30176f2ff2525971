package testenv

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestNewS3BucketRemovesItsBucket(t *testing.T) {
	client := s3Client(t, S3Endpoint(t))
	var bucket string
	t.Run("user", func(t *testing.T) {
		bucket = NewS3Bucket(t)
		key := "left/behind"
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("x")}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
	})
	_, err := client.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: &bucket})
	if _, ok := errors.AsType[*types.NotFound](err); !ok {
		t.Errorf("HeadBucket(%s) after its test ended = %v; want NotFound", bucket, err)
	}
}

func TestS3URL(t *testing.T) {
	endpoint := S3Endpoint(t)
	raw := S3URL(t, "vol/a")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("S3URL = %q: %v", raw, err)
	}
	if u.Scheme != "s3" || u.Path != "/vol/a" || u.Query().Get("endpoint") != endpoint {
		t.Errorf("S3URL = %q; want s3://BUCKET/vol/a?endpoint=%s", raw, endpoint)
	}
	client := s3Client(t, endpoint)
	if _, err := client.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: &u.Host}); err != nil {
		t.Errorf("HeadBucket(%s) = %v; want the bucket to exist", u.Host, err)
	}
}

func TestBucketName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	for _, name := range []string{"Short", strings.Repeat("Very Long/Sub_Test#", 8), "üß--!"} {
		t.Run(name, func(t *testing.T) {
			a, b := bucketName(t), bucketName(t)
			if !valid.MatchString(a) || !valid.MatchString(b) || a == b {
				t.Errorf("bucketName gave %q and %q; want two distinct valid bucket names", a, b)
			}
		})
	}
}
