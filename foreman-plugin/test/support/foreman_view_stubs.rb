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

  def link_to_if_authorized(name, options, html_options = {})
    link_to(name, "/stub/#{options[:controller]}/#{options[:action]}", html_options) if authorized_for(options)
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
