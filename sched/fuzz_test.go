package sched

import (
	"testing"

	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
)

// FuzzLedgerMessages decodes arbitrary bytes as each message holders
// exchange: none may panic, and what decodes encodes again; a decoded
// write is judged against a copy as a holder would judge it.
func FuzzLedgerMessages(f *testing.F) {
	rec := jobRecord{ID: "n1-3-1", Items: 2, State: api.JobRunning, Holders: []string{"n1", "n2", "n3"}, Term: 5, PrevTerm: 3, TermStart: 9}
	seeds := []any{
		putReq{Rec: rec, First: 0, Inputs: [][]byte{[]byte("1"), nil}, Complete: true, Files: map[string][]byte{"a": {1}}},
		appendReq{Rec: rec, FirstSeq: 9, Results: []api.Result{{Seq: 9, Index: 1, Status: "ok", Output: []byte("x")}}, InFirst: 2},
		appendResp{Results: 9, Items: 2, Missing: true},
		gatherReq{Job: rec.ID, Term: 6},
		gatherResp{Copy: copyState{Has: true, Term: 5, Results: 9}, Rec: &rec},
		fetchReq{Job: rec.ID, AfterSeq: 3, InFrom: 1},
		fetchResp{Rec: rec, Results: []api.Result{{Seq: 4}}, Inputs: [][]byte{{2}}},
		whereReq{Key: "nightly"},
		whereResp{Holders: rec.Holders, Job: rec.ID},
		ckptReq{Items: []ckptItem{{Job: rec.ID, Index: 1, Sealed: []byte{9}}}},
	}
	for _, s := range seeds {
		b, err := transport.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xbf, 0xff})
	f.Add([]byte{0xa2, 1, 1, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []func() any{
			func() any { return new(putReq) }, func() any { return new(putResp) },
			func() any { return new(appendReq) }, func() any { return new(appendResp) },
			func() any { return new(gatherReq) }, func() any { return new(gatherResp) },
			func() any { return new(fetchReq) }, func() any { return new(fetchResp) },
			func() any { return new(whereReq) }, func() any { return new(whereResp) },
			func() any { return new(ckptReq) },
		}
		for _, mk := range targets {
			v := mk()
			if transport.Unmarshal(b, v) != nil {
				continue
			}
			if _, err := transport.Marshal(v); err != nil {
				t.Fatalf("%T decoded but does not encode: %v", v, err)
			}
			if a, ok := v.(*appendReq); ok {
				judgeAppend(rec.copyState(), rec.Term, a.Rec.termInfo())
			}
		}
	})
}
