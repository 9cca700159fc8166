package i18n

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ReadBack reads text, which was written with the English message of one
// of the keys starting with prefix, in lang: the message that matches it
// formatted again with the same arguments, each %s one through arg (nil:
// as written). False when no message of prefix matches. For texts kept as
// English where they are recorded (setup's steps in the audit trail) and
// shown in the reader's language.
func ReadBack(lang Lang, prefix, text string, arg func(string) any) (string, bool) {
	for _, m := range patternsOf(prefix) {
		sub := m.re.FindStringSubmatch(text)
		if sub == nil {
			continue
		}
		args := make([]any, len(m.verbs))
		for i, verb := range m.verbs {
			switch {
			case verb == 'd':
				n, err := strconv.Atoi(sub[i+1])
				if err != nil {
					return "", false
				}
				args[i] = n
			case arg != nil:
				args[i] = arg(sub[i+1])
			default:
				args[i] = sub[i+1]
			}
		}
		return T(lang, m.key, args...), true
	}
	return "", false
}

// pattern is an English message as a regular expression over the texts
// it formats: each %s or %d one group.
type pattern struct {
	key   string
	re    *regexp.Regexp
	verbs []byte
	fixed int // length of the message's own text, which ranks the patterns
}

// patterns holds, per prefix asked for, the patterns of the English
// messages of its keys with only %s and %d verbs: compiled on first use,
// for that prefix's messages only.
var patterns struct {
	sync.Mutex
	of map[string][]pattern
}

// patternsOf are prefix's patterns, the most specific (the longest fixed
// text) first: "role %s removed (…)" is tried before "role %s".
func patternsOf(prefix string) []pattern {
	patterns.Lock()
	defer patterns.Unlock()
	if ps, ok := patterns.of[prefix]; ok {
		return ps
	}
	var ps []pattern
	for key, en := range catalog[English] {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		if p, ok := compile(key, en); ok {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].fixed != ps[j].fixed {
			return ps[i].fixed > ps[j].fixed
		}
		return ps[i].key < ps[j].key
	})
	if patterns.of == nil {
		patterns.of = map[string][]pattern{}
	}
	patterns.of[prefix] = ps
	return ps
}

func compile(key, en string) (pattern, bool) {
	p := pattern{key: key}
	var re strings.Builder
	re.WriteString("^")
	for rest := en; rest != ""; {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			re.WriteString(regexp.QuoteMeta(rest))
			p.fixed += len(rest)
			break
		}
		if i == len(rest)-1 {
			return p, false
		}
		re.WriteString(regexp.QuoteMeta(rest[:i]))
		p.fixed += i
		switch rest[i+1] {
		case 's':
			re.WriteString("(.+?)")
		case 'd':
			re.WriteString("([0-9]+)")
		default:
			return p, false
		}
		p.verbs = append(p.verbs, rest[i+1])
		rest = rest[i+2:]
	}
	re.WriteString("$")
	p.re = regexp.MustCompile(re.String())
	return p, true
}
