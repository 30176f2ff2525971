package attach

import "testing"

func TestJudge(t *testing.T) {
	const attached = "a1b2"
	for _, tc := range []struct {
		name, attached, description string
		want                        Verdict
		remember                    string
	}{
		{"same daemon (a network cut)", attached, "objbacker s3://b/vol, 1 MiB blocks [incarnation=a1b2 continues=0f0f]", Same, "a1b2"},
		{"clean restart continues it", attached, "objbacker s3://b/vol [incarnation=c3d4 continues=a1b2]", Continues, "c3d4"},
		{"first clean stop on the bucket", attached, "x [incarnation=c3d4 continues=none]", Lossy, "c3d4"},
		{"crash then --force: continues an older token", attached, "x [incarnation=e5f6 continues=0f0f]", Lossy, "e5f6"},
		{"no bracket", attached, "objbacker s3://b/vol, 1 MiB blocks", Unknown, ""},
		{"bracket not at the end", attached, "x [incarnation=a1b2 continues=none] y", Unknown, ""},
		{"attached to a server without one", "", "x [incarnation=a1b2 continues=none]", Unknown, "a1b2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, inc := Judge(tc.attached, tc.description)
			if v != tc.want || inc.Token != tc.remember {
				t.Errorf("Judge(%q, %q) = %v, %q; want %v, %q", tc.attached, tc.description, v, inc.Token, tc.want, tc.remember)
			}
		})
	}
}

func TestParseIncarnation(t *testing.T) {
	inc, ok := ParseIncarnation("objbacker s3://b/vol, 1 MiB blocks [incarnation=00ff continues=none]")
	if !ok || inc.Token != "00ff" || inc.Continues != "none" {
		t.Fatalf("got %+v, %v", inc, ok)
	}
	for _, d := range []string{"", "[incarnation= continues=none]", "[incarnation=XYZ continues=none]", "[incarnation=ab continues=]"} {
		if inc, ok := ParseIncarnation(d); ok {
			t.Errorf("ParseIncarnation(%q) = %+v, want none", d, inc)
		}
	}
}
