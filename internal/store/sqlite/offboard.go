package sqlite

import (
	"context"
	"sync"
)

// locks are the in-process locks of every SQLite store: one process serves
// a SQLite file, so a lock there is a lock for the whole portal. They are
// keyed by the file, so two handles on one file (a test, or serve and a
// CLI run in one process) exclude each other too.
var locks sync.Map // path + "\x00" + name -> *sync.Mutex

func (s *DB) TryLock(ctx context.Context, name string) (func(), bool, error) {
	v, _ := locks.LoadOrStore(s.path+"\x00"+name, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	if !mu.TryLock() {
		return nil, false, nil
	}
	var once sync.Once
	return func() { once.Do(mu.Unlock) }, true, nil
}
