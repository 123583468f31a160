# frozen_string_literal: true

# The few Foreman view helpers the plugin's pages call, reduced to what
# lets them render outside Foreman: enough to run every line of the
# templates against real records, not to check Foreman's own output.
module ForemanViewStubs
  MainApp = Struct.new(:unused) do
    def host_path(name)
      "/hosts/#{name}"
    end

    def config_reports_path(search:)
      "/config_reports?search=#{CGI.escape(search)}"
    end

    # Foreman's own routes know none of the plugin's pages.
    def url_for(options)
      raise ActionController::UrlGenerationError, "No route matches #{options.inspect}" \
        if options[:controller].to_s.start_with?('foreman_pvc/')

      "/#{options[:controller]}/#{options[:action]}"
    end
  end

  attr_reader :page_title, :title_actions_given

  def title(text)
    @page_title = text
  end

  def title_actions(*actions)
    @title_actions_given = actions
  end

  def _(text)
    text
  end

  def n_(singular, plural, count)
    count == 1 ? singular : plural
  end

  def table_css_classes(*extra)
    (['table'] + extra).join(' ')
  end

  def sort(field, as:)
    tag.a(as, href: "?order=#{field}")
  end

  def will_paginate_with_info(collection)
    tag.div("#{collection.size} entries", class: 'pagination')
  end

  # As Foreman's: the URL comes from main_app unless an engine is named.
  def link_to_if_authorized(name, options = {}, html_options = {})
    engine = options.delete(:engine) || main_app
    link_to(name, engine.url_for(options.reverse_merge(only_path: true)), html_options) if authorized_for(options)
  end

  # Foreman's OperatingsystemsHelper#label, which every page gets (helper
  # :all): it hides ActionView's label(object, method, text), so a form
  # builder's f.label breaks inside Foreman.
  def label(record)
    record.to_s
  end

  def authorized_for(_options)
    true
  end

  def date_time_relative(time)
    time.utc.iso8601
  end

  def main_app
    MainApp.new
  end
end
