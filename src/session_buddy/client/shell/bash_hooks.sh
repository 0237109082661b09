  PROMPT_COMMAND="__sb_prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
  __sb_old=$(trap -p EXIT)
  __sb_old=${__sb_old#trap -- \'}
  __sb_old=${__sb_old%\' EXIT}
  trap "__sb_exit${__sb_old:+; $__sb_old}" EXIT
