# session-buddy: this interactive shell is one session (session-buddy init fish)
if status is-interactive; and not set -q __sb_file
  set -g __sb_cmd %(quoted)s
  set -g __sb_every %(interval)d
  set -q SESSION_BUDDY_HEARTBEAT; and set -g __sb_every $SESSION_BUDDY_HEARTBEAT
  set -g __sb_component shell
  set -q SESSION_BUDDY_SHELL_COMPONENT; and set -g __sb_component $SESSION_BUDDY_SHELL_COMPONENT
  set -g __sb_dir /tmp/session-buddy-shells-(id -u)
  set -q XDG_RUNTIME_DIR; and set -g __sb_dir $XDG_RUNTIME_DIR/session-buddy-shells-(id -u)
  mkdir -p -m 700 $__sb_dir 2>/dev/null
  set -g __sb_file $__sb_dir/$fish_pid
  echo -n > $__sb_file
  set -g __sb_last (date +%%s)
  # A line of sh, detached from this shell and its terminal: nothing here waits for it,
  # so each send may take its time (--timeout 5) before it spools. nohup first: a
  # terminal that closes as the shell exits hangs up its process group, which the forked
  # child is still in until setsid runs (under load, the end was lost so).
  function __sb_bg
    command nohup setsid -f sh -c $argv[1] </dev/null >/dev/null 2>&1
  end
  set -g __sb_beat "sid=\$(cat '$__sb_file'); [ -n \"\$sid\" ] && $__sb_cmd emit heartbeat --timeout 5 --session-id \"\$sid\""
  __sb_bg "$__sb_cmd emit start --timeout 5 --component '$__sb_component' --shell-type fish --pid $fish_pid > '$__sb_file.new' && mv '$__sb_file.new' '$__sb_file'"
  __sb_bg "echo \$\$ > '$__sb_file.loop'; while kill -0 $fish_pid; do sleep $__sb_every; kill -0 $fish_pid || exit; $__sb_beat; done"
  function __sb_prompt --on-event fish_prompt
    set -l now (date +%%s)
    if test (math $now - $__sb_last) -ge $__sb_every
      set -g __sb_last $now
      __sb_bg $__sb_beat
    end
  end
  function __sb_exit --on-event fish_exit
    __sb_bg "kill \$(cat '$__sb_file.loop') 2>/dev/null; rm -f '$__sb_file.loop'; for i in 1 2 3 4 5 6 7 8 9 10; do [ -s '$__sb_file' ] && break; sleep 0.5; done; sid=\$(cat '$__sb_file'); rm -f '$__sb_file'; [ -n \"\$sid\" ] && $__sb_cmd emit end --timeout 5 --session-id \"\$sid\" --exit-code 0 --exit-reason exit"
  end
end
