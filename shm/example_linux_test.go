package shm_test

import (
	"fmt"
	"log"

	"golang.org/x/sys/unix"

	"github.com/gwipc/gwipc/shm"
)

func Example() {
	// Writer: one pool, created up front, and a registered reading peer.
	pool, err := shm.NewPool("example", shm.Geometry{SlotSize: 256, SlotCount: 16})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	peer, err := pool.AddReader(4) // the peer may hold at most 4 slots
	if err != nil {
		log.Fatal(err)
	}

	// The pool's fd travels to the peer over SCM_RIGHTS, which gives the peer
	// its own copy; a dup stands in for that here.
	fd, err := unix.FcntlInt(uintptr(pool.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}

	// Reader: map the pool read-only. MapView owns fd from now on.
	view, err := shm.MapView(fd, pool.Geometry())
	if err != nil {
		log.Fatal(err)
	}
	defer view.Close()

	// Writer: loan a slot, write in place, share it with the peer, drop the
	// writer's own reference. The handle goes out on the control channel.
	loan, err := pool.Loan()
	if err != nil {
		log.Fatal(err)
	}
	h, err := loan.Handle(copy(loan.Bytes(), "hello, shared memory"))
	if err != nil {
		log.Fatal(err)
	}
	if err := pool.Share(h.Slot, peer); err != nil {
		log.Fatal(err)
	}
	if err := loan.Discard(); err != nil {
		log.Fatal(err)
	}

	// Reader: read the payload in place; then tell the writer it is consumed.
	b, err := view.Bytes(h)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", b)

	// Writer, on Payload_consumed: the slot is free again.
	if err := pool.Release(h.Slot, peer); err != nil {
		log.Fatal(err)
	}
	fmt.Println("slots in use:", pool.Stats().InUse)
	// Output:
	// hello, shared memory
	// slots in use: 0
}
