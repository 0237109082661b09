# session-buddy: this interactive shell is one session (session-buddy init %(shell)s)
if %(interactive)s && [ -z "${__sb_file-}" ]; then
  __sb_cmd=%(quoted)s
  __sb_every=${SESSION_BUDDY_HEARTBEAT:-%(interval)d}
  __sb_dir=${XDG_RUNTIME_DIR:-/tmp}/session-buddy-shells-$UID
  [ -d "$__sb_dir" ] || mkdir -p -m 700 "$__sb_dir" 2>/dev/null
  __sb_file=$__sb_dir/$$
  : > "$__sb_file"
  __sb_last=$SECONDS
  # A line of sh, detached from this shell and its terminal: nothing here waits for it,
  # so each send may take its time (--timeout 5) before it spools.
  if command -v setsid >/dev/null 2>&1; then
    __sb_bg() { ( nohup setsid sh -c "$1" </dev/null >/dev/null 2>&1 & ) ; }
  else  # macOS has no setsid
    __sb_bg() { ( nohup sh -c "$1" </dev/null >/dev/null 2>&1 & ) ; }
  fi
  __sb_beat="sid=\$(cat '$__sb_file'); [ -n \"\$sid\" ] && $__sb_cmd emit heartbeat --timeout 5 --session-id \"\$sid\""
  __sb_bg "$__sb_cmd emit start --timeout 5 --component \"\${SESSION_BUDDY_SHELL_COMPONENT:-shell}\" --shell-type %(shell)s --pid $$ > '$__sb_file.new' && mv '$__sb_file.new' '$__sb_file'"
  # While the shell lives, idle or not, it says so every interval.
  __sb_bg "echo \$\$ > '$__sb_file.loop'; while kill -0 $$; do sleep $__sb_every; kill -0 $$ || exit; $__sb_beat; done"
  __sb_prompt() {
    if (( SECONDS - __sb_last >= __sb_every )); then
      __sb_last=$SECONDS
      __sb_bg "$__sb_beat"
    fi
  }
  # exit ends the session cleanly, whatever the last command's status.
  __sb_exit() {
    __sb_bg "kill \$(cat '$__sb_file.loop') 2>/dev/null; rm -f '$__sb_file.loop'; for i in 1 2 3 4 5 6 7 8 9 10; do [ -s '$__sb_file' ] && break; sleep 0.5; done; sid=\$(cat '$__sb_file'); rm -f '$__sb_file'; [ -n \"\$sid\" ] && $__sb_cmd emit end --timeout 5 --session-id \"\$sid\" --exit-code 0 --exit-reason exit"
  }
%(hooks)s
fi
