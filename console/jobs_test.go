package console

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestJobSearchPages: the search lists the latest results first, a page
// at most searchLimit of them, and the next page goes on with the first
// result the page had no room for: every job is on exactly one page.
func TestJobSearchPages(t *testing.T) {
	const jobs = searchLimit + 30
	s := newTestConsole(t, true)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := (queue.Setup{}).Ensure(ctx, s.js); err != nil {
		t.Fatal(err)
	}
	for i := range jobs {
		res := wire.Result{JobID: fmt.Sprintf("t-%04d", i), Status: wire.Succeeded, FinishedAt: time.Now()}
		b, _ := json.Marshal(res)
		if _, err := s.js.Publish(ctx, s.names.Result("ticketing", res.JobID), b); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := cookieOf(t, s, RoleRead)
	listed := map[string]int{}
	ids, next := regexp.MustCompile(`href="/jobs/(t-\d{4})"`), regexp.MustCompile(`href="(/jobs\?[^"]*)">Older jobs`)
	path := "/jobs?within=1h"
	for pages := 0; path != ""; pages++ {
		if pages > 2 {
			t.Fatal("more pages than the results fill")
		}
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.AddCookie(c)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", path, w.Code, w.Body.String())
		}
		for _, m := range ids.FindAllStringSubmatch(w.Body.String(), -1) {
			listed[m[1]]++
		}
		path = ""
		if m := next.FindStringSubmatch(w.Body.String()); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	for i := range jobs {
		if id := fmt.Sprintf("t-%04d", i); listed[id] != 1 {
			t.Errorf("%s listed %d times, want once", id, listed[id])
		}
	}
}
