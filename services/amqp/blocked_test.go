package amqp_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/testserver"
)

// A full disk, for real: dmsd's data directory on a small tmpfs, filled up.
// A publish storage refuses for lack of space blocks the connection
// (connection.blocked, no nack); once there is room again the connection
// is unblocked and the publish confirmed and stored. Mounting needs root
// (CAP_SYS_ADMIN), as make test runs here; elsewhere the test is skipped.
func TestConnectionBlockedWhileStorageIsFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=48m"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
	}
	// Registered first, so that it runs after the server stopped.
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	// etcd elsewhere: only the storage role's logs fill the small disk.
	endpoint := testserver.StartEtcd(t)
	srv := testserver.Start(t, testserver.WithFlags("-node.data-dir="+filepath.Join(dir, "data"), "-etcd.endpoints="+endpoint))
	conn := dial(t, srv)
	blocked := conn.NotifyBlocked(make(chan amqp091.Blocking, 4))
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("full", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish(t, ch, "", "full", "before")

	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			break
		}
	}
	require.NoError(t, f.Close())

	body := bytes.Repeat([]byte("x"), 256<<10)
	conf, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "full", false, false, amqp091.Publishing{Body: body})
	require.NoError(t, err)
	select {
	case b := <-blocked:
		require.True(t, b.Active, "want connection.blocked, got %+v", b)
		require.Contains(t, b.Reason, "STORAGE_FULL")
	case <-conf.Done():
		t.Fatalf("the publish was answered (ack %v) while the disk is full, instead of blocking", conf.Acked())
	case <-time.After(60 * time.Second):
		t.Fatal("no connection.blocked while the disk is full")
	}
	select {
	case <-conf.Done():
		t.Fatal("the publish was answered while the connection is blocked")
	default:
	}

	require.NoError(t, os.Remove(filler))
	select {
	case b := <-blocked:
		require.False(t, b.Active, "want connection.unblocked, got %+v", b)
	case <-time.After(60 * time.Second):
		t.Fatal("no connection.unblocked once the disk has room")
	}
	ok, err := conf.WaitContext(context.Background())
	require.NoError(t, err)
	require.True(t, ok, "the held publish was nacked")
	d, ok, err := ch.Get("full", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "before", string(d.Body))
	d, ok, err = ch.Get("full", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, body, d.Body)
}
