# Runs `instructgpt --quick --out OUT` and checks what a CI run can check: it exits 0, writes the
# report, the figures, the checkpoints and every metrics log, and the reward of both PPO runs is
# recorded as a finite number. Whether it rose (mean of the last quarter of the iterations
# against the first, from summary.json) is printed, not enforced: the quick run's reward model
# is trained on 144 rankings by one-layer models and sits near chance, so its reward is noise.
file(REMOVE_RECURSE ${OUT})
execute_process(COMMAND ${PROGRAM} --quick --out ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "instructgpt --quick exited with ${rc}")
endif()
foreach(f report.md summary.json reward.svg kl.svg beta.svg scores.svg tokenizer.tiktoken
          pretrain_small.jsonl pretrain_large.jsonl sft_small.jsonl sft_large.jsonl reward_model.jsonl
          ppo.jsonl ppo_ptx.jsonl checkpoints/sft_small.safetensors checkpoints/reward_model.safetensors
          checkpoints/ppo.safetensors checkpoints/ppo_ptx.safetensors)
  if(NOT EXISTS ${OUT}/${f})
    message(FATAL_ERROR "instructgpt --quick did not write ${f}")
  endif()
endforeach()
file(READ ${OUT}/summary.json summary)
foreach(run ppo ppo_ptx)
  string(JSON first GET "${summary}" ${run} reward_first_quarter)
  string(JSON last GET "${summary}" ${run} reward_last_quarter)
  if(NOT first MATCHES "^-?[0-9]" OR NOT last MATCHES "^-?[0-9]")
    message(FATAL_ERROR "${run}: the reward is not a finite number (first quarter ${first}, last quarter ${last})")
  endif()
  if(last GREATER first)
    message(STATUS "${run}: reward rose, ${first} -> ${last}")
  else()
    message(STATUS "${run}: reward did not rise, ${first} -> ${last}")
  endif()
endforeach()
