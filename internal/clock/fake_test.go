package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeTimerFiresOnlyWhenDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	tm := f.NewTimer(time.Hour)
	f.Advance(59 * time.Minute)
	select {
	case <-tm.C():
		t.Fatal("timer fired a minute early")
	default:
	}
	f.Advance(time.Minute)
	select {
	case got := <-tm.C():
		if !got.Equal(start.Add(time.Hour)) {
			t.Fatalf("fired with %s", got)
		}
	default:
		t.Fatal("timer did not fire when due")
	}
	if f.Waiters() != 0 {
		t.Fatalf("%d waiters left after the timer fired", f.Waiters())
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reported true")
	}
}

func TestFakeTimerStopAndImmediate(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	f.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	select {
	case <-f.NewTimer(0).C():
	default:
		t.Fatal("a zero timer did not fire at once")
	}
}

func TestFakeTicker(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tk := f.NewTicker(10 * time.Second)
	defer tk.Stop()
	for i := 1; i <= 3; i++ {
		f.Advance(10 * time.Second)
		select {
		case got := <-tk.C():
			if want := time.Unix(int64(10*i), 0); !got.Equal(want) {
				t.Fatalf("tick %d at %s, want %s", i, got, want)
			}
		default:
			t.Fatalf("tick %d missing", i)
		}
	}
	f.Advance(35 * time.Second) // three periods: one tick, the rest dropped
	<-tk.C()
	select {
	case <-tk.C():
		t.Fatal("a slow receiver got more than one tick")
	default:
	}
	f.Advance(4 * time.Second) // next tick is at 70 s, now 69 s
	select {
	case <-tk.C():
		t.Fatal("ticked off schedule")
	default:
	}
}

func TestWaitForWaiters(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-f.NewTimer(time.Minute).C()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.WaitForWaiters(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitForWaiterBeyond(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Minute)
	<-done
	tk := f.NewTicker(time.Second)
	defer tk.Stop()
	short0, cancel0 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel0()
	if err := f.WaitForWaiterBeyond(short0, time.Hour); err == nil {
		t.Fatal("WaitForWaiterBeyond(1h) returned nil with only a 1 s ticker pending")
	}

	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := f.WaitForWaiters(short, 5); err == nil {
		t.Fatal("WaitForWaiters returned nil with no waiters and an ended context")
	}
}
