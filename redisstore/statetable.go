package redisstore

import (
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// The transition script does not write the state machine out itself: its
// checks run on Lua functions generated here from repermit's stage and
// transition tables, and on advanceLua, the Lua twin of repermit.Apply.
// TestScriptAgreesWithTheTable runs every (stage, event) pair of the table
// through both.

// luaNames gives the scripts the meta hash fields, campaign statuses,
// events, states and state codes they name, as Lua locals holding the Go
// constants' values, so a renamed one cannot leave a script behind.
func luaNames() string {
	var b strings.Builder
	confirmed, _ := repermit.StageNamed("confirmed")
	for _, kv := range [][2]string{
		{"F_CONFIG", fConfig},
		{"F_SEQ", fSeq},
		{"F_HEARTBEAT", fHeartbeat},
		{"F_HIGH_WATER", fHighWater},
		{"F_WAVE_STOP", fWaveStop},
		{"F_WAVE_ACK", fWaveAck},
		{"F_WAVE_BASE", fWaveBase},
		{"F_WAVE_PFX", fWavePfx},
		{"F_STATUS", fStatus},
		{"F_DEADLINE", fDeadline},
		{"F_LEDGER_HEAD", fLedgerHead},
		{"F_LEDGER_SEQ", fLedgerSeq},
		{"F_COUNT", fCountPfx},
		{"F_TOPIC", fTopicPfx},
		{"F_SHARD_OF", fShardOf},
		{"F_SHARDS", fShards},
		{"F_EVENTS", fEvents},
		{"STATUS_IMPORTING", string(repermit.StatusImporting)},
		{"STATUS_RUNNING", string(repermit.StatusRunning)},
		{"STATUS_PAUSED", string(repermit.StatusPaused)},
		{"CODE_CONFIRMED", string(confirmed.Code)},
		{"EVENT_CLAIM", string(repermit.EventClaim)},
		{"EVENT_CONFIRM", string(repermit.EventConfirm)},
		{"STATE_CONFIRMED", string(repermit.StateConfirmed)},
		{"EVENT_BOUNCE", string(repermit.EventBounce)},
		{"EVENT_EXPIRE", string(repermit.EventExpire)},
		{"STATE_BOUNCED", string(repermit.StateBounced)},
		{"STATE_EXPIRED", string(repermit.StateExpired)},
	} {
		fmt.Fprintf(&b, "local %s = %s\n", kv[0], luaString(kv[1]))
	}
	return b.String()
}

// luaScript is a script that names fields, statuses and codes through
// luaNames.
func luaScript(src string) *redis.Script { return redis.NewScript(luaNames() + src) }

// stateTableLua renders the stage and transition tables as Lua functions:
//
//	stageOf(letter, k)  the stage of a code's letter and mail step, the
//	                    state users see, whether entering it erases the
//	                    personal data; nil for a code of no stage
//	rule(event, stage, step, lease)
//	                    the row of the pair: the new code for the event's
//	                    mail step and new lease end, step rule, lease
//	                    rule, until_deadline; nil for none
//	isAnswer(event)     whether the event is a recipient's answer
//
// They are chains of comparisons rather than Lua tables: Redis runs a
// script's top level on every call, and building the tables there cost a
// few microseconds a call, more than the state checks of a one-recipient
// call (measured with a loop inside one script on Redis 7).
func stateTableLua(stages []repermit.Stage, transitions []repermit.Transition) string {
	var b strings.Builder
	b.WriteString("-- Generated from repermit's state tables (states.go) by redisstore.stateTableLua.\n")
	b.WriteString("local function stageOf(l, k)\n")
	// A stage of one mail step goes before the stage of its letter alone.
	for _, st := range slices.SortedStableFunc(slices.Values(stages), func(a, b repermit.Stage) int { return cmpBool(a.Step == 0, b.Step == 0) }) {
		cond := "l == " + luaString(string(st.Code))
		if st.Step != 0 {
			cond += fmt.Sprintf(" and k == %d", st.Step)
		}
		fmt.Fprintf(&b, "  if %s then return %s, %s, %t end\n", cond, luaString(st.Name), luaString(string(st.State)), st.Erases)
	}
	b.WriteString("  return nil\nend\n")

	var events, answers []string
	rows := map[repermit.Event][]string{}
	for _, t := range transitions {
		if !slices.Contains(events, string(t.On)) {
			events = append(events, string(t.On))
			if t.On.Answer() {
				answers = append(answers, "e == "+luaString(string(t.On)))
			}
		}
		rows[t.On] = append(rows[t.On], fmt.Sprintf("if st == %s then return %s, %s, %s, %t end",
			luaString(t.From), luaCode(t.To), luaString(t.Step.String()), luaString(t.Lease.String()), t.UntilDeadline))
	}
	b.WriteString("local function rule(e, st, step, lease)\n")
	for _, e := range events {
		fmt.Fprintf(&b, "  if e == %s then\n    %s\n    return nil\n  end\n", luaString(e), strings.Join(rows[repermit.Event(e)], "\n    "))
	}
	b.WriteString("  return nil\nend\n")
	fmt.Fprintf(&b, "local function isAnswer(e) return %s end\n", strings.Join(append(answers, "false"), " or "))
	return b.String()
}

// luaCode renders a transition's code template as a Lua expression of
// step and lease: "q{step}:{lease}" as 'q' .. step .. ':' .. lease.
func luaCode(template string) string {
	var parts []string
	for rest := template; rest != ""; {
		i := strings.IndexByte(rest, '{')
		j := strings.IndexByte(rest, '}')
		if i < 0 || j < i {
			parts = append(parts, luaString(rest))
			break
		}
		if i > 0 {
			parts = append(parts, luaString(rest[:i]))
		}
		switch v := rest[i+1 : j]; v {
		case "step", "lease":
			parts = append(parts, v)
		default: // not a placeholder: text, as repermit.Apply keeps it
			parts = append(parts, luaString(rest[i:j+1]))
		}
		rest = rest[j+1:]
	}
	return strings.Join(parts, " .. ")
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// advanceLua reads a stored code and applies one transition of the rules
// stateTableLua generates, as repermit.Apply does in Go.
const advanceLua = `
-- stage returns the stage of a stored code (nil for none), its mail step,
-- the state users see and whether entering the stage erases personal data.
local function stage(code)
  local k = tonumber(string.match(code, '^.(%d+)') or '0')
  local st, state, erases = stageOf(string.sub(code, 1, 1), k)
  return st, k, state, erases
end

-- advance returns the code after event op for code of stage st and mail
-- step k, or nil and the reason it is refused: 'no', or 'busy' for a live
-- lease. step is the event's mail step, now unix ms, lease the new lease
-- end (unix ms, a string), late whether the deadline has passed.
local function advance(op, code, st, k, step, now, lease, late)
  if not st then return nil, 'no' end
  local new, steprule, leaserule, untilDeadline = rule(op, st, step, lease)
  if not new then return nil, 'no' end
  if untilDeadline and late then return nil, 'no' end
  if steprule == 'first' and step ~= 1 then return nil, 'no' end
  if steprule == 'later' and not (step > 1 and k < step) then return nil, 'no' end
  if steprule == 'same' and k ~= step then return nil, 'no' end
  if leaserule ~= 'any' then
    local held = tonumber(string.match(code, ':(%d+)$') or '0')
    if leaserule == 'lapsed' and held > now then return nil, 'busy' end
    if leaserule == 'held' and held == 0 then return nil, 'no' end
  end
  return new
end
`

// luaString quotes s as a Lua string literal.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
