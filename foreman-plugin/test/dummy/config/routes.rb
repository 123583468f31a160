# frozen_string_literal: true

# The plugin's config/routes.rb mounts the engine and adds its API routes.
Rails.application.routes.draw do
end
