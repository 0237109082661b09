  precmd_functions+=(__sb_prompt)
  zshexit_functions+=(__sb_exit)
