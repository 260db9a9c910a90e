package shm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCopyCopiesEveryByteOfEverySize(t *testing.T) {
	for _, size := range []int{0, 1, copyChunk - 1, copyChunk, copyChunk + 1, 2 * copyChunk, 3*copyChunk + 17} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			src := make([]byte, size)
			for i := range src {
				src[i] = byte(i*7 + i>>19)
			}
			dst := make([]byte, size+8) // longer than src: the tail stays as it was
			for i := range dst {
				dst[i] = 0xee
			}
			assert.Equal(t, size, Copy(dst, src))
			assert.True(t, bytes.Equal(src, dst[:size]), "the copied bytes differ")
			assert.Equal(t, bytes.Repeat([]byte{0xee}, 8), dst[size:])
		})
	}
}

func TestCopyStopsAtTheShorterSlice(t *testing.T) {
	src := bytes.Repeat([]byte{1}, copyChunk+5)
	dst := make([]byte, copyChunk+2)
	assert.Equal(t, copyChunk+2, Copy(dst, src))
	assert.Equal(t, src[:copyChunk+2], dst)
	assert.Equal(t, 3, Copy(make([]byte, 3), src))
}

func BenchmarkCopy1MiB(b *testing.B) {
	src, dst := make([]byte, 1<<20), make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	for b.Loop() {
		Copy(dst, src)
	}
}
