package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// measured is what a phase's client reports.
type measured struct {
	bytes   int64
	ops     int64
	seconds float64 // the client's own time: fio's runtime, the bare client's span
	iops    float64
	p99ms   float64
}

// fioDir is one direction of a fio job in its JSON output.
type fioDir struct {
	IOBytes int64   `json:"io_bytes"`
	TotalIO int64   `json:"total_ios"`
	Runtime int64   `json:"runtime"` // ms
	IOPS    float64 `json:"iops"`
	Clat    struct {
		Percentile map[string]float64 `json:"percentile"`
	} `json:"clat_ns"`
}

type fioOutput struct {
	Jobs []struct {
		Read  fioDir `json:"read"`
		Write fioDir `json:"write"`
	} `json:"jobs"`
}

// readResult reads either bench s3's result or fio's JSON output. fio can
// put notes before its JSON, so parsing starts at the first brace.
func readResult(path string) (measured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return measured{}, err
	}
	if i := bytes.IndexByte(data, '{'); i > 0 {
		data = data[i:]
	}
	var s3 s3Result
	if err := json.Unmarshal(data, &s3); err == nil && s3.Kind == "s3" {
		return measured{
			bytes:   s3.Bytes,
			ops:     int64(s3.Ops),
			seconds: s3.Seconds,
			iops:    float64(s3.Ops) / s3.Seconds,
			p99ms:   s3.P99ms,
		}, nil
	}
	var out fioOutput
	if err := json.Unmarshal(data, &out); err != nil {
		return measured{}, fmt.Errorf("%s: neither fio nor bench s3 JSON: %w", path, err)
	}
	return fioMeasured(out), nil
}

// fioMeasured sums every job and direction: bytes and IOPS add up, time is
// the longest runtime (fio's group bandwidth), and p99 is the worst.
func fioMeasured(out fioOutput) measured {
	var m measured
	var runtime int64
	for _, job := range out.Jobs {
		for _, d := range []fioDir{job.Read, job.Write} {
			if d.IOBytes == 0 {
				continue
			}
			m.bytes += d.IOBytes
			m.ops += d.TotalIO
			m.iops += d.IOPS
			runtime = max(runtime, d.Runtime)
			m.p99ms = max(m.p99ms, d.Clat.Percentile["99.000000"]/1e6)
		}
	}
	m.seconds = float64(runtime) / 1000
	return m
}
