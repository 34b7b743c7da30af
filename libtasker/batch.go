package main

/*
#include <stdint.h>
#include <stdlib.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/httpapi"
)

// tasker_create_tasks creates many tasks with one call: requests is the body
// of POST /v1/tasks/batch (a JSON array of task requests, or {"tasks":
// [...]}, at most httpapi.BatchMaxTasksDefault), and the answer is the
// usual envelope around that endpoint's document: {"created", "existing",
// "failed", "results": [{"index", "status", "task" | "error",
// "http_status"}]}. Each request is checked on its own: a bad one fails
// alone. The envelope holds an error only for the whole batch (malformed
// JSON, too many requests, the database down before anything was written).
// timeoutMS <= 0 means DefaultTimeout. Free the answer with tasker_free.
//
//export tasker_create_tasks
func tasker_create_tasks(handle C.uint64_t, requests *C.char, timeoutMS C.int64_t) (out *C.char) {
	defer func() {
		if p := recover(); p != nil {
			out = answer(nil, recovered(p))
		}
	}()
	in, err := lookup(uint64(handle))
	if err != nil {
		return answer(nil, err)
	}
	defer in.calls.Done()
	var body []byte
	if requests != nil {
		body = []byte(C.GoString(requests))
	}
	return answer(in.createTasks(body, time.Duration(timeoutMS)*time.Millisecond))
}

// createTasks runs one batch with a deadline (DefaultTimeout when timeout
// is not positive).
func (in *instance) createTasks(body []byte, timeout time.Duration) (any, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := httpapi.CreateTasks(ctx, in.client, body, 0, in.log)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (timeout %s): %w", context.DeadlineExceeded, timeout, err)
	}
	return res, err
}
